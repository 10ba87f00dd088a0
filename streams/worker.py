"""The worker process: one Faust app with the orders agent, the due-time timer and the sender.

Wiring only; the logic lives in :mod:`streams.orders` (apply the core, store, index, emit), :mod:`streams.dueindex`
(find due orders) and :mod:`streams.sender` (talk to Amazon).

* ``orders`` agent (concurrency 1, the only writer of order state) consumes ``order-changes`` and
  ``order-events`` (co-partitioned, keyed by order) and keeps two RocksDB tables: ``orders`` (one JSON record
  per order) and ``due-index`` (see :mod:`streams.dueindex`).
* ``fire_due`` timer (every ``timer_interval`` real seconds, on every worker): for each *active* partition, the
  due entries of the index become ``TimerFired`` events on that partition of ``order-events``. Skipped while
  rebalancing or recovering; results of a scan that straddled a rebalance are dropped.
* ``send`` agent consumes ``send-commands`` (keyed by seller) and hands each command to the :class:`Sender`,
  whose per-seller lanes call the SP-API and publish results to ``order-events`` and ``outcomes``.
* The sellers registry is a live view of the compacted ``sellers`` topic on every worker (a global table);
  both agents wait until it is loaded.

Processing is at-least-once (Faust's exactly-once is not trustworthy, streaming-notes §3.5); every handler is
idempotent: the core dedupes notifications, drops stale results and early timers, and the lease brings back
a command lost in a crash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
from pydantic import ValidationError

from connectors.clock import Clock
from connectors.crypto import SecretKeyError, TokenCipher
from connectors.spapi import AppCredentials, ClientConfig, SolicitationsClient
from statemachine import OrderRecord, SellerPolicy, SendCommand, SendResult, StateChanged, TimerFired
from streams.deadletters import DeadLetter
from streams.dueindex import DueEntry, DueScanner, active_partitions
from streams.orders import OrdersProcessor
from streams.outcomes import SendAttempt
from streams.registry_store import SellerDirectory
from streams.sender import Sender, SenderConfig
from streams.settings import Settings
from streams.topics import DEAD_LETTERS, ORDER_CHANGES, ORDER_EVENTS, OUTCOMES, SELLERS, SEND_COMMANDS

log = logging.getLogger(__name__)


class _TableStore:
    """The orders table and the due index, as :class:`streams.orders.OrderStore` (inside stream iteration)."""

    def __init__(self, orders: Any, due: Any) -> None:
        self.orders = orders
        self.due = due

    def get(self, key: str) -> OrderRecord | None:
        raw = self.orders.get(key.encode())
        if raw is None:
            return None
        try:
            return OrderRecord.model_validate_json(raw)
        except ValidationError as exc:
            log.error("stored record of %s is unreadable (%s); starting it over", key, exc.error_count())
            return None

    def put(self, record: OrderRecord) -> None:
        self.orders[record.key.encode()] = record.model_dump_json().encode()

    def delete(self, key: str) -> None:
        del self.orders[key.encode()]

    def index_add(self, key: bytes) -> None:
        self.due[key] = b""

    def index_remove(self, key: bytes) -> None:
        del self.due[key]


@dataclass(frozen=True)
class Topics:
    """The worker's Faust topic objects (raw bytes in and out; JSON is handled at the edges)."""

    changes: Any
    events: Any
    commands: Any
    outcomes: Any
    dead_letters: Any

    async def dead_letter(self, letter: DeadLetter) -> None:
        key = letter.key.encode() if letter.key is not None else None
        await self.dead_letters.send(key=key, value=letter.to_json())


class _Emitter:
    """Topic sends of the orders agent (Faust attaches them to the current event: published before its commit)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    async def command(self, command: SendCommand) -> None:
        await self.topics.commands.send(key=command.seller_id.encode(), value=command.model_dump_json().encode())

    async def outcome(self, event: StateChanged) -> None:
        await self.topics.outcomes.send(key=event.order_key.encode(), value=event.model_dump_json().encode())

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.topics.dead_letter(letter)

    async def reroute(self, key: bytes, value: bytes) -> None:
        await self.topics.changes.send(key=key, value=value)


class _SenderSink:
    """Where the sender publishes (from its own tasks, outside stream iteration)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    async def result(self, result: SendResult) -> None:
        await self.topics.events.send(key=result.key.encode(), value=result.model_dump_json().encode())

    async def attempt(self, attempt: SendAttempt) -> None:
        await self.topics.outcomes.send(key=attempt.order_key.encode(), value=attempt.model_dump_json().encode())

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.topics.dead_letter(letter)


@dataclass
class Pipeline:
    """Everything the worker wires together; built by :func:`build_pipeline`."""

    settings: Settings
    clock: Clock
    """The process's one clock: every part of the worker reads time from it."""
    app: faust.App
    topics: Topics
    orders_table: Any
    due_table: Any
    scanner: DueScanner
    directory: SellerDirectory
    sender: Sender
    processor: OrdersProcessor
    ready: asyncio.Event
    clients: dict[str, SolicitationsClient]


def build_pipeline(settings: Settings) -> Pipeline:
    """Create the Faust app and register its agents, tables and timer (nothing runs until the worker starts)."""
    prefix = settings.topic_prefix
    partitions = settings.partitions
    clock = settings.clock()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.worker_dir()),
        processing_guarantee="at_least_once",
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        web_enabled=False,
        producer_acks=-1,
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 3),
        broker_rebalance_timeout=max(settings.kafka_session_timeout, 30.0),
        # A sender lane awaits the SP-API for seconds; the agents themselves never block that long.
        broker_commit_every=1000,
        broker_commit_interval=1.0,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    changes_name = ORDER_CHANGES.named(prefix)
    events_name = ORDER_EVENTS.named(prefix)
    inbound = app.topic(changes_name, events_name, partitions=partitions, **raw)
    changes = app.topic(changes_name, partitions=partitions, **raw)
    events = app.topic(events_name, partitions=partitions, **raw)
    commands = app.topic(SEND_COMMANDS.named(prefix), partitions=partitions, **raw)
    outcomes = app.topic(OUTCOMES.named(prefix), partitions=partitions, **raw)
    dead_letters = app.topic(DEAD_LETTERS.named(prefix), partitions=partitions, **raw)

    rocks = {
        "write_buffer_size": settings.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mb << 20,
        "target_file_size_base": 16 << 20,
    }
    orders_table = app.Table("orders", key_type=bytes, value_type=bytes, partitions=partitions, options=rocks)
    due_table = app.Table("due-index", key_type=bytes, value_type=bytes, partitions=partitions, options=rocks)

    scanner = DueScanner(budget=settings.timer_budget)
    ready = asyncio.Event()
    directory = SellerDirectory(bootstrap_servers=settings.kafka_bootstrap_servers, topic=SELLERS.named(prefix))
    cipher = _cipher(settings)
    clients: dict[str, SolicitationsClient] = {}
    client_config = ClientConfig(
        call_deadline=settings.spapi_call_deadline,
        request_timeout=settings.spapi_request_timeout,
        max_attempts=settings.spapi_max_attempts,
        backoff_cap=settings.spapi_backoff_cap,
    )

    def client_for(app_name: str) -> SolicitationsClient | None:
        client = clients.get(app_name)
        if client is None:
            credentials = settings.lwa_app(app_name)
            if credentials is None:
                return None
            client = clients[app_name] = SolicitationsClient(
                app=AppCredentials(client_id=credentials.client_id, client_secret=credentials.client_secret),
                clock=clock,
                spapi_endpoint=settings.spapi_endpoint,
                lwa_endpoint=settings.lwa_endpoint,
                config=client_config,
            )
        return client

    def policy_of(seller_id: str) -> SellerPolicy | None:
        seller = directory.get(seller_id)
        return seller.policy if seller is not None else None

    topics = Topics(changes=changes, events=events, commands=commands, outcomes=outcomes, dead_letters=dead_letters)
    sender = Sender(
        sellers=directory,
        client_for=client_for,
        cipher=cipher,
        sink=_SenderSink(topics),
        clock=clock,
        config=SenderConfig(
            unknown_seller_retry=timedelta(hours=settings.unknown_seller_retry_hours),
            attention_retry=timedelta(hours=settings.attention_retry_hours),
        ),
    )
    processor = OrdersProcessor(
        store=_TableStore(orders_table, due_table),
        emitter=_Emitter(topics),
        policies=policy_of,
        clock=clock,
        timing=settings.timing(),
        scanner=scanner,
        changes_topic=changes_name,
    )
    pipeline = Pipeline(
        settings=settings,
        clock=clock,
        app=app,
        topics=topics,
        orders_table=orders_table,
        due_table=due_table,
        scanner=scanner,
        directory=directory,
        sender=sender,
        processor=processor,
        ready=ready,
        clients=clients,
    )
    directory.subscribe(lambda change: sender.seller_changed(change.seller_id))
    _register(pipeline, inbound)
    return pipeline


def _register(p: Pipeline, inbound: Any) -> None:
    app = p.app
    clock = p.clock
    due_changelog = p.due_table.changelog_topic.get_topic_name()
    commands_name = p.topics.commands.get_topic_name()

    @app.task
    async def load_sellers() -> None:
        await p.directory.start()
        log.info("sellers registry loaded: %d seller(s)", len(p.directory))
        p.ready.set()

    @app.agent(inbound, name="orders", concurrency=1)
    async def orders(stream: Any) -> None:
        await p.ready.wait()
        async for event in stream.events():
            message = event.message
            try:
                await p.processor.handle(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                )
            except Exception:  # a bug must not stop every other order: log it and go on
                log.exception("orders agent failed on %s[%s]@%s", message.topic, message.partition, message.offset)

    @app.agent(p.topics.commands, name="send", concurrency=1)
    async def send(stream: Any) -> None:
        await p.ready.wait()
        async for event in stream.events():
            message = event.message
            try:
                command = SendCommand.model_validate_json(message.value or b"")
            except ValidationError as exc:
                log.warning("dead-lettering an unreadable send command at %s@%s", message.partition, message.offset)
                await p.topics.dead_letter(
                    DeadLetter.build(
                        source=commands_name,
                        reason=f"not a send command: {exc.error_count()} problem(s): {exc.errors()[0]['msg']}",
                        raw=message.value or b"",
                        at=clock.now(),
                        metadata={"partition": str(message.partition), "offset": str(message.offset)},
                    )
                )
                continue
            p.sender.submit(command, message.partition)

    @app.timer(p.settings.timer_interval, name="fire_due")
    async def fire_due() -> None:
        if not p.ready.is_set() or app.rebalancing or app.in_recovery:
            return
        generation = app.consumer_generation_id
        now, mono = clock.now(), clock.monotonic()
        batch: list[tuple[int, DueEntry]] = []
        dbs = p.due_table.data._dbs  # private Faust store internals: one raw Rdict per partition (dueindex docs)
        for partition in active_partitions(app.assignor.assigned_actives(), due_changelog):
            db = dbs.get(partition)
            if db is not None:
                batch.extend((partition, entry) for entry in p.scanner.due(partition, db, now, mono))
        if app.consumer_generation_id != generation or app.rebalancing:
            p.scanner.reset()
            return
        for partition, entry in batch:
            seller_id, _, order_id = entry.order_key.partition("/")
            fired = TimerFired(seller_id=seller_id, order_id=order_id, index_due_ms=entry.due_ms)
            await p.topics.events.send(
                key=entry.order_key.encode(), value=fired.model_dump_json().encode(), partition=partition
            )

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the receiver too narrowly
    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0]
        p.scanner.forget(tp.partition for tp in revoked if tp.topic == due_changelog)
        p.sender.revoke({tp.partition for tp in revoked if tp.topic == commands_name})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        assigned: set[Any] = args[0]
        p.scanner.forget(tp.partition for tp in assigned if tp.topic == due_changelog)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_resources(sender: Any, *args: Any, **kwargs: Any) -> None:
        await p.sender.close()
        for client in p.clients.values():
            await client.aclose()
        await p.directory.stop()


def _cipher(settings: Settings) -> TokenCipher | None:
    try:
        return TokenCipher(settings.secret_key)
    except SecretKeyError as exc:
        log.error("%s: sends will be deferred until it is configured", exc)
        return None
