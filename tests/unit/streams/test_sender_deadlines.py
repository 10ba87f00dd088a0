"""The sender spends no quota on lost causes: a command whose calls cannot reach Amazon before its deadline (its
seller's bucket is empty, or the send itself takes longer than the time left) is dropped without a call, and the
token goes to the next order that can still make it. A scripted Amazon and a manual clock: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from connectors.clock import ManualClock
from connectors.crypto import TokenCipher, generate_key
from connectors.spapi import ClientConfig, SolicitationsClient
from statemachine import SellerPolicy, SendCommand, SendResult, SendResultKind, SendStarted
from statemachine.marketplaces import Region
from streams.deadletters import DeadLetter
from streams.outcomes import SendAttempt
from streams.registry import SellerRecord
from streams.sender import Sender
from tests.support.spapi_fakes import LWA_URL, US, actions, created, make_client, seller, token_response

K = SendResultKind
CIPHER = TokenCipher(SecretStr(generate_key()))
START = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Call:
    method: str
    order_id: str
    at: float
    """Seconds after START when Amazon received it."""


class Amazon:
    """Offers the action for every order (except ``not_offered``), creates on POST; each answer takes ``latency``."""

    def __init__(self, clock: ManualClock, *, latency: float = 0.0, not_offered: frozenset[str] = frozenset()) -> None:
        self.clock = clock
        self.latency = latency
        self.not_offered = not_offered
        self.calls: list[Call] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == LWA_URL:
            return token_response(1)
        order_id = request.url.path.split("/")[4]
        self.calls.append(Call(request.method, order_id, (self.clock.now() - START).total_seconds()))
        self.clock.advance(self.latency)
        if request.method == "POST":
            return created()
        return actions() if order_id in self.not_offered else actions("productReviewAndSellerFeedback")


class Sink:
    def __init__(self) -> None:
        self.results: list[SendResult] = []

    async def started(self, started: SendStarted) -> None:
        pass

    async def result(self, result: SendResult) -> None:
        self.results.append(result)

    async def attempt(self, attempt: SendAttempt) -> None:
        pass

    async def dead_letter(self, letter: DeadLetter) -> None:
        raise AssertionError(f"unexpected dead letter {letter.reason}")


def sellers() -> dict[str, SellerRecord]:
    credentials = seller()
    record = SellerRecord(
        seller_id=credentials.seller_id,
        name="Seller 1",
        region=Region.NA,
        marketplace_ids=(US,),
        refresh_token_encrypted=CIPHER.encrypt(credentials.refresh_token),
        policy=SellerPolicy(),
        updated_at=START,
    )
    return {record.seller_id: record}


def command(clock: ManualClock, order: str, *, left: float, maybe_sent: bool = False) -> SendCommand:
    """A command for ``order`` whose window closes ``left`` seconds from now."""
    now = clock.now()
    return SendCommand(
        seller_id="SELLER1",
        order_id=order,
        marketplace_id=US,
        lease_id=1,
        issued_at=now,
        lease_expires_at=now + timedelta(minutes=30),
        deadline=now + timedelta(seconds=left),
        maybe_sent=maybe_sent,
    )


@dataclass
class Setup:
    clock: ManualClock
    amazon: Amazon
    client: SolicitationsClient
    sink: Sink
    sender: Sender
    settled: list[tuple[int, int]]

    def submit(self, *commands: SendCommand) -> None:
        for offset, one in enumerate(commands, start=len(self.settled) + 100):
            self.sender.submit(one, partition=0, offset=offset)

    async def idle(self) -> None:
        async with asyncio.timeout(5):
            while self.sender.lanes():  # noqa: ASYNC110 - the sender has no idle event
                await asyncio.sleep(0)

    def sent(self) -> list[str]:
        return [r.order_id for r in self.sink.results if r.result is K.SENT]

    def called(self) -> list[str]:
        return [c.order_id for c in self.amazon.calls]

    async def close(self) -> None:
        await self.sender.close()
        await self.client.aclose()


def setup(config: ClientConfig, **amazon: object) -> Setup:
    clock = ManualClock(START)
    fake = Amazon(clock, **amazon)  # type: ignore[arg-type]
    client, _, _ = make_client(fake.handler, config=config, clock=clock)
    sink, settled = Sink(), []
    sender = Sender(
        sellers=sellers(), client_for=lambda app: client, cipher=CIPHER, sink=sink, clock=clock, done=settled.append
    )
    return Setup(clock, fake, client, sink, sender, settled)


ONE_PER_SECOND = ClientConfig(rate=1.0, burst=1, burst_headroom=0, call_deadline=30.0)
"""One token per second per operation, no burst: every send after the first waits for its seller's bucket."""


async def test_lost_causes_cost_no_call_and_their_tokens_go_to_orders_that_can_make_it() -> None:
    run = setup(ONE_PER_SECOND)
    # One send a second (at 0, 1, 2, 3); the order closing at 1.6 s cannot be sent before 2 s.
    run.submit(
        command(run.clock, "111-0000000-0000001", left=0.5),
        command(run.clock, "111-0000000-0000002", left=1.5),
        command(run.clock, "111-0000000-0000003", left=1.6),
        command(run.clock, "111-0000000-0000004", left=2.5),
        command(run.clock, "111-0000000-0000005", left=600),
    )
    await run.idle()
    await run.close()
    assert run.sent() == ["111-0000000-0000001", "111-0000000-0000002", "111-0000000-0000004", "111-0000000-0000005"]
    assert "111-0000000-0000003" not in run.called()
    assert all(call.at <= {"1": 0.5, "2": 1.5, "4": 2.5, "5": 600}[call.order_id[-1]] for call in run.amazon.calls)
    assert run.sender.dropped() == 1
    assert len(run.settled) == 5  # the dropped command is settled too: its order's own timer expires it


async def test_a_deadline_must_leave_room_for_the_send_itself() -> None:
    fast_quota = ClientConfig(rate=100.0, burst=5, call_deadline=30.0)
    run = setup(fast_quota, latency=0.3)  # each call takes 0.3 s: a send (GET + POST) takes 0.6 s
    run.submit(command(run.clock, "111-0000000-0000001", left=600))
    await run.idle()
    run.submit(command(run.clock, "111-0000000-0000002", left=0.25), command(run.clock, "111-0000000-0000003", left=5))
    await run.idle()
    await run.close()
    assert run.sent() == ["111-0000000-0000001", "111-0000000-0000003"]
    assert "111-0000000-0000002" not in run.called()  # its check alone would have been answered after its deadline


async def test_a_maybe_sent_command_waits_for_the_create_bucket_not_the_check_bucket() -> None:
    run = setup(ONE_PER_SECOND, not_offered=frozenset({"111-0000000-0000001"}))
    run.submit(command(run.clock, "111-0000000-0000001", left=600))  # takes the GET token, not the POST one
    await run.idle()
    run.submit(command(run.clock, "111-0000000-0000002", left=0.5, maybe_sent=True))
    await run.idle()
    await run.close()
    assert run.sent() == ["111-0000000-0000002"]  # created at once with the POST token the first order left
    assert run.sender.dropped() == 0
