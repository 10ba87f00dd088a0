"""P3 (issue 12): one worker's sending path against Amazon's default plan, as a ratio of the quota-limited maximum.

    .venv/bin/python -m bench.sending [--sellers 200] [--orders 20] [--sandbox process|in-process] [--cold]
        [--no-baselines]

200 sellers x 20 eligible orders, every command submitted at once to the real :class:`streams.sender.Sender`, which
serves them with the real :class:`SolicitationsClient` against the sandbox at Amazon's default plan (1 request/s,
burst 5, per seller and operation). Results go to an in-memory sink (:class:`MemorySink`): no Kafka, because the
broker is not what limits sending (4,000 results in 15 s, where one broker takes tens of thousands a second).

The sandbox runs in **its own process** by default: Amazon's side of each call is not the worker's work, and in
the worker's process it takes a third of the CPU and queues every answer behind its own work. ``--sandbox
in-process`` runs it in the bench's event loop (``devstack.sandbox.SandboxServer``) for comparison.

The quota-limited maximum is :func:`bench.sandbox_load.theoretical_minimum`: each seller's GET bucket lets the last
of its orders start no earlier than ``(orders - burst) / rate`` seconds after the first. Printed: the achieved time
(submit to the last published result), ``ratio = minimum / achieved`` (target >= 0.97), 429s per SP-API call
(target <= 0.5 %), calls/s, the bench process's CPU per call, and when the sandbox saw the last seller's first and
last GET. The run starts **warm**, as a worker that has been running would (each seller's LWA token cached and
connections open: one GET per seller, then a rest until every bucket is full again); ``--cold`` times the token
exchanges too, as after a restart with a backlog. Baselines of the same run (fresh sellers, same sandbox):
**client alone**, the same load through the same client without the sender (one task per seller: GET then POST
per order, as a lane does), and **sandbox alone**, the calls/s the sandbox answers to a bare aiohttp client with
no rate limit, i.e. how fast the burst at the start (5 GET + 5 POST per seller) can be answered at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import aiohttp
from pydantic import SecretStr, TypeAdapter

from bench.sandbox_load import order_id, seller_credentials, theoretical_minimum
from connectors.clock import Clock, SystemClock
from connectors.crypto import TokenCipher, generate_key
from connectors.spapi import OPERATION_CREATE, OPERATION_GET, AppCredentials, ClientConfig, SolicitationsClient
from devstack.sandbox import OrderIn, SandboxConfig, SandboxServer, SellerIn
from statemachine import SellerPolicy, SendCommand, SendResult, SendStarted
from statemachine.marketplaces import Region
from streams.deadletters import DeadLetter
from streams.outcomes import SendAttempt
from streams.registry import SellerRecord
from streams.sender import Sender

__all__ = [
    "InProcessSandbox",
    "MemorySink",
    "SandboxCall",
    "SandboxHandle",
    "SendingReport",
    "build_sender",
    "run_sending",
    "sandbox_process",
    "seller_records",
]

US = "ATVPDKIKX0DER"
Where = Literal["process", "in-process"]


# --- the sandbox, in this process or its own ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SandboxCall:
    """One SP-API call the sandbox answered, as far as the benches need it."""

    operation: str
    status: int
    seller_id: str | None
    order_id: str | None
    monotonic: float


class SandboxHandle(Protocol):
    """A running sandbox, wherever it runs."""

    url: str
    lwa_url: str
    config: SandboxConfig

    async def add_sellers(self, sellers: Sequence[SellerIn]) -> None: ...

    async def add_orders(self, orders: Sequence[OrderIn]) -> None: ...

    async def calls(self) -> list[SandboxCall]:
        """Every SP-API call so far (LWA excluded)."""
        ...

    async def solicited(self) -> set[str]:
        """Order ids solicited so far."""
        ...


class InProcessSandbox:
    """:class:`SandboxServer` in the running event loop."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.url = server.url
        self.lwa_url = server.lwa_url
        self.config = server.state.config

    async def add_sellers(self, sellers: Sequence[SellerIn]) -> None:
        for seller in sellers:
            self.server.state.add_seller(seller)

    async def add_orders(self, orders: Sequence[OrderIn]) -> None:
        self.server.state.add_orders(list(orders))

    async def calls(self) -> list[SandboxCall]:
        return [
            SandboxCall(c.operation, c.status, c.seller_id, c.order_id, c.monotonic)
            for c in self.server.state.calls
            if c.operation != "lwaToken"
        ]

    async def solicited(self) -> set[str]:
        return {s.order_id for s in self.server.state.solicitations}


_SERVE = """
import asyncio, sys
from connectors.clock import SystemClock
from devstack.sandbox import SandboxConfig, serve

async def main():
    # Serve until the bench closes our stdin, or is gone (then stdin closes too): no orphan keeps the port.
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    server = asyncio.create_task(serve(SandboxConfig(), clock=SystemClock(), host="127.0.0.1", port=int(sys.argv[1])))
    await asyncio.wait({server, asyncio.create_task(stdin.read())}, return_when=asyncio.FIRST_COMPLETED)
    server.cancel()

asyncio.run(main())
"""


class ProcessSandbox:
    """A sandbox in a child process (``devstack.sandbox.serve``), driven through its admin API."""

    def __init__(self, port: int, http: aiohttp.ClientSession) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.lwa_url = f"{self.url}/auth/o2/token"
        self.config = SandboxConfig()
        self._http = http

    async def _post(self, path: str, body: bytes) -> None:
        headers = {"content-type": "application/json"}
        async with self._http.post(f"{self.url}{path}", data=body, headers=headers) as answer:
            answer.raise_for_status()

    async def add_sellers(self, sellers: Sequence[SellerIn]) -> None:
        rows = [{**s.model_dump(mode="json"), "refresh_token": s.refresh_token.get_secret_value()} for s in sellers]
        await self._post("/_sandbox/sellers", json.dumps(rows).encode())

    async def add_orders(self, orders: Sequence[OrderIn]) -> None:
        await self._post("/_sandbox/orders", TypeAdapter(list[OrderIn]).dump_json(list(orders)))

    async def _ledger(self) -> dict[str, list[dict[str, object]]]:
        async with self._http.get(f"{self.url}/_sandbox/ledger") as answer:
            answer.raise_for_status()
            return dict(await answer.json())

    async def calls(self) -> list[SandboxCall]:
        rows = (await self._ledger())["calls"]
        return [
            SandboxCall(
                str(r["operation"]),
                int(str(r["status"])),
                _opt(r["seller_id"]),
                _opt(r["order_id"]),
                float(str(r["monotonic"])),
            )
            for r in rows
            if r["operation"] != "lwaToken"
        ]

    async def solicited(self) -> set[str]:
        return {str(r["order_id"]) for r in (await self._ledger())["solicitations"]}


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


@asynccontextmanager
async def sandbox_process() -> AsyncIterator[ProcessSandbox]:
    """A sandbox in its own process on a free port, stopped on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _SERVE, str(port), stdin=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            sandbox = ProcessSandbox(port, http)
            await _until_healthy(http, sandbox.url)
            yield sandbox
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            async with asyncio.timeout(10):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()


async def _until_healthy(http: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                async with http.get(f"{url}/_sandbox/health") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


@asynccontextmanager
async def open_sandbox(where: Where, clock: Clock) -> AsyncIterator[SandboxHandle]:
    """The sandbox at Amazon's default plan, in its own process or in this one."""
    if where == "process":
        async with sandbox_process() as remote:
            yield remote
    else:
        async with SandboxServer(SandboxConfig(), clock=clock) as server:
            yield InProcessSandbox(server)


# --- the sender, wired as in a worker but publishing to memory ---------------------------------------------------


class MemorySink:
    """The sender's :class:`~streams.sender.ResultSink` in memory: counts, and the real time of every result."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.results: list[SendResult] = []
        self.result_times: list[float] = []
        self.started_count = 0
        self.attempts = 0
        self.dead: list[DeadLetter] = []
        self._changed = asyncio.Event()

    async def started(self, started: SendStarted) -> None:
        self.started_count += 1

    async def result(self, result: SendResult) -> None:
        self.results.append(result)
        self.result_times.append(self._clock.monotonic())
        self._changed.set()

    async def attempt(self, attempt: SendAttempt) -> None:
        self.attempts += 1

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)

    async def wait_for(self, count: int, limit: float) -> None:
        """Until ``count`` results were published (``TimeoutError`` after ``limit`` seconds)."""
        async with asyncio.timeout(limit):
            while len(self.results) < count:
                self._changed.clear()
                await self._changed.wait()

    def outcomes(self) -> Counter[str]:
        """Results by kind."""
        return Counter(str(r.result) for r in self.results)


def seller_records(cipher: TokenCipher, indexes: Iterable[int]) -> dict[str, SellerRecord]:
    """The registry of synthetic sellers ``indexes`` as the sender reads it."""
    registry: dict[str, SellerRecord] = {}
    for index in indexes:
        credentials = seller_credentials(index)
        registry[credentials.seller_id] = SellerRecord(
            seller_id=credentials.seller_id,
            name=f"Load seller {index}",
            region=Region.NA,
            marketplace_ids=(US,),
            refresh_token_encrypted=cipher.encrypt(credentials.refresh_token),
            policy=SellerPolicy(),
            updated_at=datetime.now(UTC),
        )
    return registry


def sandbox_sellers(indexes: Iterable[int], *, rate: float | None = None) -> list[SellerIn]:
    """The same sellers as the sandbox's LWA knows them (their own ``rate`` when given)."""
    return [
        SellerIn(seller_id=c.seller_id, refresh_token=c.refresh_token, rate=rate)
        for c in (seller_credentials(i) for i in indexes)
    ]


def build_sender(
    sandbox: SandboxHandle,
    registry: dict[str, SellerRecord],
    cipher: TokenCipher,
    sink: MemorySink,
    clock: Clock,
    client_config: ClientConfig,
) -> tuple[Sender, SolicitationsClient]:
    """The real sender with one real client for the sandbox's app (close both when done)."""
    config = sandbox.config
    client = SolicitationsClient(
        app=AppCredentials(client_id=config.client_id, client_secret=config.client_secret),
        clock=clock,
        spapi_endpoint=sandbox.url,
        lwa_endpoint=sandbox.lwa_url,
        config=client_config,
    )
    sender = Sender(
        sellers=registry,
        client_for=lambda app: client if app == "default" else None,
        cipher=cipher,
        sink=sink,
        clock=clock,
    )
    return sender, client


def send_command(seller_id: str, oid: str, now: datetime, deadline: datetime, lease: int = 1) -> SendCommand:
    """A command as the orders agent issues it."""
    return SendCommand(
        seller_id=seller_id,
        order_id=oid,
        marketplace_id=US,
        lease_id=lease,
        issued_at=now,
        lease_expires_at=now + timedelta(minutes=30),
        deadline=deadline,
    )


# --- P3 --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One way of sending the load, measured: time from start to the last answer, calls, 429s, CPU."""

    elapsed: float
    calls: int
    throttled: int
    cpu_seconds: float
    timeline: dict[str, float] = field(default_factory=dict)
    """Seconds from the start: when the last seller made its first GET, the median seller's first-to-last GET span,
    when the last seller made its last GET, and when the last create arrived (as the sandbox saw them)."""

    def describe(self, minimum: float) -> str:
        return (
            f"achieved_s={self.elapsed:.3f} ratio={minimum / self.elapsed:.4f} calls={self.calls} "
            f"http_429={self.throttled} ({self.throttled / max(1, self.calls):.3%}) "
            f"calls_per_s={self.calls / self.elapsed:.0f} "
            f"cpu_ms_per_call={1000 * self.cpu_seconds / max(1, self.calls):.2f}"
        )


@dataclass(frozen=True, slots=True)
class SendingReport:
    """What one P3 run measured: the sender, and the baselines of the same run."""

    where: str
    start: str
    sellers: int
    orders_per_seller: int
    minimum: float
    sender: Leg
    outcomes: Counter[str]
    client_alone: Leg | None = None
    """The same load through the same client without the sender (one task per seller, GET then POST per order)."""
    sandbox_calls_per_s: float | None = None
    """What the sandbox answers to a bare aiohttp client with no rate limit: the ceiling of the setup."""

    @property
    def ratio(self) -> float:
        """Quota-limited minimum over achieved time (1.0 is the quota's limit)."""
        return self.minimum / self.sender.elapsed

    def lines(self) -> list[str]:
        """The printed report."""
        lines = [
            f"P3 sending (sandbox {self.where}, {self.start}): {self.sellers} sellers x {self.orders_per_seller} "
            f"orders at Amazon's default plan; quota-limited minimum {self.minimum:.3f} s",
            f"  outcomes {dict(self.outcomes)}",
            f"  sender:       {self.sender.describe(self.minimum)}  (targets: ratio >= 0.97, 429s <= 0.5%)",
            "                " + " ".join(f"{name}={seconds:.3f}" for name, seconds in self.sender.timeline.items()),
        ]
        if self.client_alone is not None:
            lines.append(f"  client alone: {self.client_alone.describe(self.minimum)}")
            lines.append(f"  sender / client alone: {self.client_alone.elapsed / self.sender.elapsed:.4f}")
        if self.sandbox_calls_per_s is not None:
            lines.append(
                f"  sandbox alone: {self.sandbox_calls_per_s:.0f} calls/s (bare aiohttp client, no rate limit); "
                f"the burst at the start asks {2 * self.sellers * 5 + self.sellers} calls at once"
            )
        lines.append(
            f"P3 ratio={self.ratio:.4f} http_429_share={self.sender.throttled / max(1, self.sender.calls):.4%}"
        )
        return lines


async def _load(sandbox: SandboxHandle, clock: Clock, indexes: range, orders_per_seller: int) -> list[tuple[str, str]]:
    """Sellers ``indexes`` with ``orders_per_seller`` eligible orders each, in the sandbox: (seller id, order id)."""
    await sandbox.add_sellers(sandbox_sellers(indexes))
    orders = [(seller_credentials(s).seller_id, order_id(s, o)) for s in indexes for o in range(orders_per_seller)]
    delivered = clock.now() - timedelta(days=8)
    await sandbox.add_orders(
        [
            OrderIn(seller_id=s, order_id=o, marketplace_id=US, earliest_delivery=delivered, latest_delivery=delivered)
            for s, o in orders
        ]
    )
    return orders


async def _leg(sandbox: SandboxHandle, sellers: set[str], started: float, elapsed: float, cpu: float) -> Leg:
    calls = [c for c in await sandbox.calls() if c.seller_id in sellers and c.monotonic >= started]
    return Leg(
        elapsed=elapsed,
        calls=len(calls),
        throttled=sum(1 for c in calls if c.status == 429),
        cpu_seconds=cpu,
        timeline=_timeline(calls, started),
    )


WARM_UP_REST = 6.0
"""Seconds after the warm-up call, for every bucket (ours and the sandbox's) to be full again: burst / rate + 1."""


async def warm_up(client: SolicitationsClient, indexes: range) -> None:
    """What a worker that has been running has: each seller's LWA token cached, connections open; then rest until
    every bucket is full again, so the run starts as a fresh one would, minus the token exchanges."""
    await asyncio.gather(*(client.get_solicitation_actions(seller_credentials(i), order_id(i, 0), US) for i in indexes))
    await asyncio.sleep(WARM_UP_REST)


async def run_sending(
    sandbox: SandboxHandle,
    *,
    clock: Clock,
    indexes: range,
    orders_per_seller: int,
    client_config: ClientConfig,
    warm: bool = True,
) -> tuple[Leg, Counter[str]]:
    """Every command submitted at once to one sender; measured until its last result is published."""
    cipher = TokenCipher(SecretStr(generate_key()))
    orders = await _load(sandbox, clock, indexes, orders_per_seller)
    now = clock.now()
    deadline = now + timedelta(days=22)
    commands = [send_command(s, o, now, deadline) for s, o in orders]
    sink = MemorySink(clock)
    sender, client = build_sender(sandbox, seller_records(cipher, indexes), cipher, sink, clock, client_config)
    try:
        if warm:
            await warm_up(client, indexes)
        cpu = time.process_time()
        started = clock.monotonic()
        for offset, command in enumerate(commands):
            sender.submit(command, partition=0, offset=offset)
        await sink.wait_for(len(commands), limit=600)
        elapsed = max(sink.result_times) - started
        cpu = time.process_time() - cpu
    finally:
        await sender.close()
        await client.aclose()
    leg = await _leg(sandbox, {s for s, _ in orders}, started, elapsed, cpu)
    return leg, sink.outcomes()


async def run_client_alone(
    sandbox: SandboxHandle,
    *,
    clock: Clock,
    indexes: range,
    orders_per_seller: int,
    client_config: ClientConfig,
    warm: bool = True,
) -> Leg:
    """The same load through the same client, no sender: per seller, GET then POST for each order in turn."""
    orders = await _load(sandbox, clock, indexes, orders_per_seller)
    config = sandbox.config
    async with SolicitationsClient(
        app=AppCredentials(client_id=config.client_id, client_secret=config.client_secret),
        clock=clock,
        spapi_endpoint=sandbox.url,
        lwa_endpoint=sandbox.lwa_url,
        config=client_config,
    ) as client:

        async def one_seller(index: int) -> None:
            credentials = seller_credentials(index)
            for o in range(orders_per_seller):
                await client.get_solicitation_actions(credentials, order_id(index, o), US)
                await client.create_product_review_and_seller_feedback(credentials, order_id(index, o), US)

        if warm:
            await warm_up(client, indexes)
        cpu = time.process_time()
        started = clock.monotonic()
        await asyncio.gather(*(one_seller(i) for i in indexes))
        elapsed = clock.monotonic() - started
        cpu = time.process_time() - cpu
    return await _leg(sandbox, {s for s, _ in orders}, started, elapsed, cpu)


def _timeline(calls: list[SandboxCall], started: float) -> dict[str, float]:
    """Where the time went, per seller, as the sandbox saw the calls arrive."""
    gets: dict[str | None, list[float]] = {}
    for call in calls:
        if call.operation == OPERATION_GET:
            gets.setdefault(call.seller_id, []).append(call.monotonic - started)
    creates = [c.monotonic - started for c in calls if c.operation == OPERATION_CREATE]
    spans = sorted(times[-1] - times[0] for times in gets.values())
    return {
        "latest_first_get": max(times[0] for times in gets.values()),
        "median_get_span": spans[len(spans) // 2],
        "latest_last_get": max(times[-1] for times in gets.values()),
        "latest_create": max(creates),
    }


async def sandbox_alone(sandbox: SandboxHandle, *, sellers: int, orders_per_seller: int) -> float:
    """Calls/s the sandbox answers to a bare aiohttp client (each seller's GET + POST per order, no rate limit on
    either side, as many sellers at once as the run): the ceiling against which the sender's calls/s read."""
    indexes = range(2000, 2000 + sellers)
    await sandbox.add_sellers(sandbox_sellers(indexes, rate=1e6))
    delivered = datetime.now(UTC) - timedelta(days=8)
    await sandbox.add_orders(
        [
            OrderIn(
                seller_id=seller_credentials(s).seller_id,
                order_id=order_id(s, o),
                marketplace_id=US,
                earliest_delivery=delivered,
                latest_delivery=delivered,
            )
            for s in indexes
            for o in range(orders_per_seller)
        ]
    )
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as http:
        tokens = await asyncio.gather(*(_access_token(http, sandbox, i) for i in indexes))
        started = time.perf_counter()
        await asyncio.gather(
            *(_one_seller(http, sandbox.url, i, t, orders_per_seller) for i, t in zip(indexes, tokens, strict=True))
        )
        elapsed = time.perf_counter() - started
    return sellers * orders_per_seller * 2 / elapsed


async def _one_seller(http: aiohttp.ClientSession, base: str, index: int, token: str, orders: int) -> None:
    headers = {"x-amz-access-token": token}
    params = {"marketplaceIds": US}
    for o in range(orders):
        url = f"{base}/solicitations/v1/orders/{order_id(index, o)}"
        async with http.get(url, params=params, headers=headers) as answer:
            await answer.read()
        async with http.post(
            f"{url}/solicitations/productReviewAndSellerFeedback", params=params, headers=headers
        ) as answer:
            await answer.read()


async def _access_token(http: aiohttp.ClientSession, sandbox: SandboxHandle, index: int) -> str:
    config = sandbox.config
    form = {
        "grant_type": "refresh_token",
        "refresh_token": seller_credentials(index).refresh_token.get_secret_value(),
        "client_id": config.client_id,
        "client_secret": config.client_secret.get_secret_value(),
    }
    async with http.post(sandbox.lwa_url, data=form) as answer:
        return str((await answer.json())["access_token"])


async def _main(sellers: int, orders: int, where: Where, baselines: bool, warm: bool) -> SendingReport:
    clock = SystemClock()
    config = ClientConfig()
    async with open_sandbox(where, clock) as sandbox:
        leg, outcomes = await run_sending(
            sandbox, clock=clock, indexes=range(sellers), orders_per_seller=orders, client_config=config, warm=warm
        )
        report = SendingReport(
            where="in its own process" if isinstance(sandbox, ProcessSandbox) else "in the bench's process",
            start="warm: LWA tokens cached" if warm else "cold: LWA exchanges timed",
            sellers=sellers,
            orders_per_seller=orders,
            minimum=theoretical_minimum(orders, rate=sandbox.config.rate, burst=sandbox.config.burst),
            sender=leg,
            outcomes=outcomes,
        )
        if baselines:
            alone = await run_client_alone(
                sandbox,
                clock=clock,
                indexes=range(1000, 1000 + sellers),
                orders_per_seller=orders,
                client_config=config,
                warm=warm,
            )
            capacity = await sandbox_alone(sandbox, sellers=sellers, orders_per_seller=orders)
            report = replace(report, client_alone=alone, sandbox_calls_per_s=capacity)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sellers", type=int, default=200)
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--sandbox", choices=("process", "in-process"), default="process")
    parser.add_argument("--no-baselines", action="store_true", help="skip the client-alone and sandbox-alone runs")
    parser.add_argument("--cold", action="store_true", help="time the LWA token exchanges too (a worker's restart)")
    args = parser.parse_args()
    report = asyncio.run(_main(args.sellers, args.orders, args.sandbox, not args.no_baselines, not args.cold))
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
