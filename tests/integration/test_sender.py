"""The sender against the in-process sandbox over real loopback HTTP: lanes, pauses, dry runs, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from connectors.crypto import TokenCipher, generate_key
from connectors.spapi import SolicitationsClient
from connectors.spapi.client import OPERATION_CREATE, OPERATION_GET
from devstack.sandbox import SandboxServer, ScriptedFault
from statemachine import SellerPolicy, SendCommand, SendResult, SendResultKind, SendStarted
from statemachine.marketplaces import Region
from streams.deadletters import DeadLetter
from streams.outcomes import SendAttempt
from streams.registry import SellerRecord
from streams.sender import Sender, SenderConfig
from streams.topics import SEND_COMMANDS
from tests.support.spapi import US, ClientFactory, JumpClock, SandboxFactory, seller, shipped_order

pytestmark = pytest.mark.integration

K = SendResultKind
CIPHER = TokenCipher(SecretStr(generate_key()))


class Registry(dict[str, SellerRecord]):
    """The registry as the sender sees it: seller id -> record."""

    def add(self, index: int, **policy: object) -> SellerRecord:
        credentials = seller(index)
        record = SellerRecord(
            seller_id=credentials.seller_id,
            name=f"Seller {index}",
            region=Region.NA,
            marketplace_ids=(US,),
            refresh_token_encrypted=CIPHER.encrypt(credentials.refresh_token),
            policy=SellerPolicy.model_validate(policy),
            updated_at=datetime.now(UTC),
        )
        self[record.seller_id] = record
        return record


class Sink:
    def __init__(self, sandbox_calls: Callable[[], int] = lambda: 0) -> None:
        self.starts: list[tuple[SendStarted, int]] = []
        """Each SendStarted with the number of SP-API calls the sandbox had seen when it was published."""
        self.sandbox_calls = sandbox_calls
        self.results: list[SendResult] = []
        self.attempts: list[SendAttempt] = []
        self.dead: list[DeadLetter] = []
        self.on_result: Callable[[SendResult], None] | None = None
        self._changed = asyncio.Event()

    async def started(self, started: SendStarted) -> None:
        self.starts.append((started, self.sandbox_calls()))

    async def result(self, result: SendResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        self._changed.set()

    async def attempt(self, attempt: SendAttempt) -> None:
        self.attempts.append(attempt)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)

    async def wait_for(self, count: int, limit: float = 30.0) -> list[SendResult]:
        async with asyncio.timeout(limit):
            while len(self.results) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.results

    def by_order(self) -> dict[str, SendResult]:
        return {r.order_id: r for r in self.results}


def command(
    index: int, order_id: str, clock: JumpClock, *, lease: int = 1, deadline_days: float = 20, **kw: object
) -> SendCommand:
    now = clock.now()
    return SendCommand(
        seller_id=seller(index).seller_id,
        order_id=order_id,
        marketplace_id=US,
        lease_id=lease,
        issued_at=now,
        lease_expires_at=now + timedelta(minutes=30),
        deadline=now + timedelta(days=deadline_days),
        **kw,
    )


def calls(sandbox: SandboxServer, operation: str) -> list[str]:
    return [c.order_id or "" for c in sandbox.state.calls if c.operation == operation]


Setup = tuple[SandboxServer, SolicitationsClient, "Registry", "Sink", Sender]

settled: list[tuple[int, int]] = []
"""Tickets the sender settled, in order (reset per test by the ``setup`` fixture)."""


@pytest.fixture
async def setup(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> AsyncIterator[Setup]:
    sandbox = await sandbox_factory()
    client = await client_factory(sandbox)
    settled.clear()
    registry = Registry()
    sink = Sink(lambda: len(sandbox.state.calls))
    sender = Sender(
        sellers=registry,
        client_for=lambda app: client if app == "default" else None,
        cipher=CIPHER,
        sink=sink,
        clock=jump_clock,
        config=SenderConfig(unknown_seller_retry=timedelta(hours=24), attention_retry=timedelta(hours=6)),
        done=settled.append,
    )
    yield sandbox, client, registry, sink, sender
    await sender.close()


async def test_eligible_orders_are_checked_then_sent_once(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    orders = [f"111-0000000-000000{i}" for i in range(3)]
    sandbox.state.add_orders([shipped_order(o, clock=jump_clock) for o in orders])
    for order in orders:
        sender.submit(command(1, order, jump_clock), partition=0)
    await sink.wait_for(3)
    assert {o: r.result for o, r in sink.by_order().items()} == dict.fromkeys(orders, K.SENT)
    assert sorted(s.order_id for s in sandbox.state.solicitations) == orders
    assert sorted(calls(sandbox, OPERATION_GET)) == orders
    assert all(r.request_id for r in sink.results)
    assert [a.result for a in sink.attempts] == [K.SENT] * 3


async def test_an_order_not_offered_yet_is_reported_and_not_created(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000009", clock=jump_clock, days_since_delivery=1)])
    sender.submit(command(1, "111-0000000-0000009", jump_clock), partition=0)
    (result,) = await sink.wait_for(1)
    assert result.result is K.NOT_YET_AVAILABLE
    assert calls(sandbox, OPERATION_CREATE) == []


async def test_an_unknown_seller_is_deferred_without_calling_amazon(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, _registry, sink, sender = setup
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
    (result,) = await sink.wait_for(1)
    assert result.result is K.DEFERRED
    assert "not in the registry" in result.reason
    assert result.retry_after_seconds == 24 * 3600
    assert sandbox.state.calls == []


async def test_a_paused_seller_holds_its_commands_until_resumed(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    paused = registry.add(1, paused=True)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
    await asyncio.sleep(0.5)
    assert sink.results == []
    assert sender.queued() == 1
    assert sandbox.state.calls == []

    registry[paused.seller_id] = paused.with_policy(updated_at=datetime.now(UTC), paused=False)
    sender.seller_changed(paused.seller_id)
    (result,) = await sink.wait_for(1)
    assert result.result is K.SENT


async def test_a_dry_run_seller_checks_but_never_creates(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1, dry_run=True)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
    (result,) = await sink.wait_for(1)
    assert result.result is K.DRY_RUN
    assert calls(sandbox, OPERATION_GET) == ["111-0000000-0000001"]
    assert calls(sandbox, OPERATION_CREATE) == []
    assert sink.attempts[0].dry_run


async def test_an_ambiguous_create_is_retried_and_reported_as_already_sent(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sandbox.state.script_faults([ScriptedFault(fault="ambiguous", operation=OPERATION_CREATE)])
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
    (result,) = await sink.wait_for(1)
    assert result.result is K.NOT_AVAILABLE
    assert result.maybe_sent
    assert len(sandbox.state.solicitations) == 1


async def test_a_maybe_sent_command_creates_directly(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders(
        [shipped_order(o, clock=jump_clock) for o in ("111-0000000-0000001", "111-0000000-0000002")]
    )
    # The first order was solicited by an earlier attempt whose answer was lost.
    sandbox.state.solicitations.clear()
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
    await sink.wait_for(1)
    sender.submit(command(1, "111-0000000-0000001", jump_clock, lease=2, maybe_sent=True), partition=0)
    sender.submit(command(1, "111-0000000-0000002", jump_clock, maybe_sent=True), partition=0)
    await sink.wait_for(3)
    by_lease = {(r.order_id, r.lease_id): r for r in sink.results}
    again = by_lease[("111-0000000-0000001", 2)]
    assert again.result is K.NOT_AVAILABLE
    assert again.maybe_sent  # so the core reads it as "already sent"
    assert by_lease[("111-0000000-0000002", 1)].result is K.SENT
    assert calls(sandbox, OPERATION_GET) == ["111-0000000-0000001"]  # only the first, plain command asked first


async def test_a_revoked_seller_is_deferred_and_logged(
    setup: Setup, jump_clock: JumpClock, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sandbox.state.revoke_seller(seller(1).seller_id)
    with caplog.at_level(logging.ERROR, logger="streams.sender"):
        sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
        (result,) = await sink.wait_for(1)
    assert result.result is K.DEFERRED
    assert result.retry_after_seconds == 6 * 3600
    assert "needs attention" in caplog.text
    assert "Atzr|IT-REFRESH-1" not in caplog.text + result.reason


async def test_a_rejected_request_fails_permanently_and_is_dead_lettered(setup: Setup, jump_clock: JumpClock) -> None:
    _sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sender.submit(command(1, "111-0000000-0000404", jump_clock), partition=0)  # unknown to Amazon: 404
    (result,) = await sink.wait_for(1)
    assert result.result is K.PERMANENT_FAILURE
    (letter,) = sink.dead
    assert letter.source == SEND_COMMANDS.name
    assert "111-0000000-0000404" in letter.raw


async def test_missing_app_credentials_or_key_defer_the_order(
    sandbox_factory: SandboxFactory, jump_clock: JumpClock
) -> None:
    registry, sink = Registry(), Sink()
    registry.add(1)
    for client_for, cipher in ((lambda app: None, CIPHER), (lambda app: object(), None)):
        sender = Sender(sellers=registry, client_for=client_for, cipher=cipher, sink=sink, clock=jump_clock)  # type: ignore[arg-type]
        sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
        await sink.wait_for(len(sink.results) + 1)
        await sender.close()
    assert [r.result for r in sink.results] == [K.DEFERRED, K.DEFERRED]
    assert "no LWA credentials" in sink.results[0].reason
    assert "no secret key" in sink.results[1].reason


async def test_a_seller_sends_the_orders_whose_window_closes_first_first(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    orders = {f"111-0000000-000000{i}": 30 - i for i in range(6)}  # later ids close sooner
    sandbox.state.add_orders([shipped_order(o, clock=jump_clock) for o in orders])
    for order, days in orders.items():
        sender.submit(command(1, order, jump_clock, deadline_days=days), partition=0)
    await sink.wait_for(6)
    assert calls(sandbox, OPERATION_GET) == sorted(orders, key=orders.__getitem__)


async def test_a_newer_lease_replaces_the_queued_command(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sender.submit(command(1, "111-0000000-0000001", jump_clock, lease=1), partition=0)
    sender.submit(command(1, "111-0000000-0000001", jump_clock, lease=2), partition=0)
    sender.submit(command(1, "111-0000000-0000001", jump_clock, lease=1), partition=0)  # a late duplicate
    (result,) = await sink.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(sink.results) == 1
    assert result.lease_id == 2
    assert calls(sandbox, OPERATION_GET) == ["111-0000000-0000001"]


async def test_revoked_partitions_drop_their_queued_commands(setup: Setup, jump_clock: JumpClock) -> None:
    _sandbox, _client, registry, _sink, sender = setup
    registry.add(1, paused=True)
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=4)
    sender.submit(command(1, "111-0000000-0000002", jump_clock), partition=5)
    sender.revoke({4})
    assert sender.queued() == 1


async def test_a_throttled_seller_does_not_hold_up_another(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    registry.add(2)
    busy = [f"111-0000001-00000{i:02d}" for i in range(12)]  # 12 orders at 1/s after a burst of 4: ~8 s
    sandbox.state.add_orders([shipped_order(o, clock=jump_clock) for o in busy])
    sandbox.state.add_orders([shipped_order("222-0000002-0000001", clock=jump_clock, seller_index=2)])
    queued_when_other_done: list[int] = []

    def note(result: SendResult) -> None:
        if result.seller_id == seller(2).seller_id:
            queued_when_other_done.append(sender.queued())

    sink.on_result = note
    for order in busy:
        sender.submit(command(1, order, jump_clock), partition=0)
    sender.submit(command(2, "222-0000002-0000001", jump_clock), partition=1)
    await sink.wait_for(13, limit=60)
    assert all(r.result is K.SENT for r in sink.results)
    (queued,) = queued_when_other_done
    assert queued >= 5  # seller 2 was served while most of seller 1's orders still waited for their bucket
    assert not any(c.status == 429 for c in sandbox.state.calls)


# --- issue 9: tickets, SendStarted, deadlines, idle lanes, graceful stop -----------------------------------------


async def test_a_send_started_is_published_before_every_create_call(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0, offset=11)
    await sink.wait_for(1)
    ((started, calls_before),) = sink.starts
    assert (started.order_id, started.lease_id) == ("111-0000000-0000001", 1)
    operations = [c.operation for c in sandbox.state.calls]
    assert operations[calls_before : calls_before + 1] == [OPERATION_CREATE]  # the create came after it
    assert settled == [(0, 11)]  # settled once its result was published


async def test_a_command_is_settled_when_done_replaced_or_dropped(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    registry.add(1, paused=True)
    sender.submit(command(1, "111-0000000-0000001", jump_clock, lease=1), partition=0, offset=1)
    sender.submit(command(1, "111-0000000-0000001", jump_clock, lease=2), partition=0, offset=2)
    sender.submit(command(1, "111-0000000-0000002", jump_clock, deadline_days=-1), partition=0, offset=3)
    await asyncio.sleep(0.1)
    assert sorted(settled) == [(0, 1), (0, 2), (0, 3)]  # replaced; held while paused (its lease covers it)
    registry.add(1)
    sender.seller_changed(seller(1).seller_id)
    await sink.wait_for(1)
    assert [r.lease_id for r in sink.results] == [2]
    assert calls(sandbox, OPERATION_GET) == ["111-0000000-0000001"]  # the one past its deadline cost no call


async def test_idle_lanes_are_dropped(setup: Setup, jump_clock: JumpClock) -> None:
    _sandbox, _client, registry, sink, sender = setup
    for index in range(1, 6):
        registry.add(index)
        sender.submit(command(index, f"111-0000000-000000{index}", jump_clock), partition=0)
    await sink.wait_for(5)
    await asyncio.sleep(0.05)
    assert sender.lanes() == 0


async def test_stopping_lets_a_create_call_in_flight_finish(setup: Setup, jump_clock: JumpClock) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    sandbox.state.add_orders([shipped_order("111-0000000-0000001", clock=jump_clock)])
    sandbox.state.script_faults([ScriptedFault(fault="slow", operation=OPERATION_CREATE, delay=1.0)])
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0, offset=5)
    async with asyncio.timeout(10):
        while not sink.starts:  # noqa: ASYNC110 - the sink is a plain recorder
            await asyncio.sleep(0.01)
    await sender.close(grace=5.0)
    assert [r.result for r in sink.results] == [K.SENT]
    assert settled == [(0, 5)]


async def test_an_order_of_a_marketplace_the_seller_has_not_enabled_costs_no_call(
    setup: Setup, jump_clock: JumpClock
) -> None:
    sandbox, _client, registry, sink, sender = setup
    registry.add(1)
    germany = command(1, "111-0000000-0000001", jump_clock).model_copy(update={"marketplace_id": "A1PA6795UKMFR9"})
    sender.submit(germany, partition=0, offset=3)
    (answer,) = await sink.wait_for(1)
    assert answer.result is K.NOT_ENABLED
    assert "A1PA6795UKMFR9 is not enabled" in answer.reason
    assert sandbox.state.calls == []
    assert settled == [(0, 3)]


async def test_a_marketplace_the_seller_switched_off_costs_no_call(setup: Setup, jump_clock: JumpClock) -> None:
    from statemachine import MarketplacePolicy

    sandbox, _client, registry, sink, sender = setup
    registry.add(1, marketplaces={US: MarketplacePolicy(enabled=False)})
    sender.submit(command(1, "111-0000000-0000001", jump_clock), partition=0)
    (answer,) = await sink.wait_for(1)
    assert answer.result is K.NOT_ENABLED
    assert sandbox.state.calls == []
