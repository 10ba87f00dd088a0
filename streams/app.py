"""The worker's Faust app, its topics and tables, and the parts that work on them (built, not yet running).

:func:`build_worker` makes everything one ``solicit worker`` process runs; :func:`streams.agents.register` then
registers the agents, the timer and the rebalance hooks on it. Nothing starts until Faust's worker starts the app.

* Topics carry raw bytes in and out; JSON is handled at the edges (the processors).
* ``orders`` and ``due-index`` are RocksDB tables co-partitioned with ``order-changes`` and ``order-events``.
* The sellers registry is a live view of the compacted ``sellers`` topic (:class:`streams.directory.SellerDirectory`).

Processing is at-least-once (Faust's exactly-once is not trustworthy); every handler is idempotent: the core dedupes
notifications, drops stale results and early timers, and the lease brings back a command lost in a crash.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TableT, TopicT

from connectors.clock import Clock
from connectors.crypto import SecretKeyError, TokenCipher
from connectors.spapi import AppCredentials, SolicitationsClient
from statemachine import SellerPolicy, SendCommand, SendResult, StateChanged
from streams.deadletters import DeadLetter
from streams.directory import SellerDirectory
from streams.dueindex import DueFiring, DueScanner
from streams.orders import OrdersProcessor, TableStore
from streams.outcomes import SendAttempt
from streams.sender import Sender
from streams.settings import Settings
from streams.topics import DEAD_LETTERS, ORDER_CHANGES, ORDER_EVENTS, OUTCOMES, SELLERS, SEND_COMMANDS

log = logging.getLogger(__name__)

_RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass(frozen=True)
class Topics:
    """The worker's Faust topics (raw bytes in and out)."""

    inbound: TopicT
    """``order-changes`` and ``order-events`` together: what the orders agent reads."""
    changes: TopicT
    events: TopicT
    commands: TopicT
    outcomes: TopicT
    dead_letters: TopicT

    async def publish(self, topic: TopicT, key: str, value: bytes, partition: int | None = None) -> None:
        await topic.send(key=key.encode(), value=value, partition=partition)

    async def dead_letter(self, letter: DeadLetter) -> None:
        key = letter.key.encode() if letter.key is not None else None
        await self.dead_letters.send(key=key, value=letter.to_json())


class TopicEmitter:
    """Where the orders agent's output goes (Faust attaches the sends to the current event)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    async def command(self, command: SendCommand) -> None:
        await self.topics.publish(self.topics.commands, command.seller_id, command.model_dump_json().encode())

    async def outcome(self, event: StateChanged) -> None:
        await self.topics.publish(self.topics.outcomes, event.order_key, event.model_dump_json().encode())

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.topics.dead_letter(letter)

    async def reroute(self, key: bytes, value: bytes) -> None:
        await self.topics.changes.send(key=key, value=value)


class TopicSink:
    """Where the sender and the timer publish (from their own tasks, outside stream iteration)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    async def result(self, result: SendResult) -> None:
        await self.topics.publish(self.topics.events, result.key, result.model_dump_json().encode())

    async def attempt(self, attempt: SendAttempt) -> None:
        await self.topics.publish(self.topics.outcomes, attempt.order_key, attempt.model_dump_json().encode())

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.topics.dead_letter(letter)

    async def firing(self, firing: DueFiring, partition: int) -> None:
        """A timer firing goes to the order's own partition of ``order-events`` (where its record lives)."""
        await self.topics.publish(self.topics.events, firing.key, firing.model_dump_json().encode(), partition)


@dataclass
class SpApiClients:
    """One SP-API client per LWA application, made on first use."""

    settings: Settings
    clock: Clock
    clients: dict[str, SolicitationsClient] = field(default_factory=dict)

    def __call__(self, app_name: str) -> SolicitationsClient | None:
        client = self.clients.get(app_name)
        if client is None:
            credentials = self.settings.spapi.lwa_app(app_name)
            if credentials is None:
                return None
            spapi = self.settings.spapi
            client = self.clients[app_name] = SolicitationsClient(
                app=AppCredentials(client_id=credentials.client_id, client_secret=credentials.client_secret),
                clock=self.clock,
                spapi_endpoint=spapi.endpoint,
                lwa_endpoint=spapi.lwa_endpoint,
                config=spapi,
            )
        return client

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


@dataclass
class Worker:
    """Everything one worker process runs; built by :func:`build_worker`."""

    settings: Settings
    clock: Clock
    """The process's one clock: every part of the worker reads time from it."""
    app: faust.App
    topics: Topics
    orders_table: TableT[bytes, bytes]
    due_table: TableT[bytes, bytes]
    scanner: DueScanner
    directory: SellerDirectory
    sender: Sender
    processor: OrdersProcessor
    sink: TopicSink
    clients: SpApiClients
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the sellers registry is loaded; the agents and the timer wait for it."""


def build_app(settings: Settings) -> faust.App:
    """The Faust app: at-least-once, RocksDB tables, our Kafka settings; no web server."""
    kafka = settings.kafka
    return faust.App(
        settings.worker.app_id,
        broker=kafka.faust_broker(),
        store="rocksdb://",
        datadir=str(settings.worker.state_dir()),
        processing_guarantee="at_least_once",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        table_standby_replicas=settings.worker.standby_replicas,
        web_enabled=False,
        producer_acks=-1,
        broker_session_timeout=kafka.session_timeout,
        broker_heartbeat_interval=min(3.0, kafka.session_timeout / 3),
        broker_rebalance_timeout=max(kafka.session_timeout, 30.0),
        # A sender lane awaits the SP-API for seconds; the agents themselves never block that long.
        broker_commit_every=1000,
        broker_commit_interval=1.0,
    )


def build_topics(app: faust.App, settings: Settings) -> Topics:
    prefix, partitions = settings.kafka.topic_prefix, settings.kafka.partitions
    changes_name, events_name = ORDER_CHANGES.named(prefix), ORDER_EVENTS.named(prefix)
    return Topics(
        inbound=app.topic(changes_name, events_name, partitions=partitions, **_RAW),
        changes=app.topic(changes_name, partitions=partitions, **_RAW),
        events=app.topic(events_name, partitions=partitions, **_RAW),
        commands=app.topic(SEND_COMMANDS.named(prefix), partitions=partitions, **_RAW),
        outcomes=app.topic(OUTCOMES.named(prefix), partitions=partitions, **_RAW),
        dead_letters=app.topic(DEAD_LETTERS.named(prefix), partitions=partitions, **_RAW),
    )


def build_tables(app: faust.App, settings: Settings) -> tuple[TableT[bytes, bytes], TableT[bytes, bytes]]:
    """The ``orders`` table and the ``due-index`` table, with modest RocksDB options."""
    worker = settings.worker
    rocks = {
        "write_buffer_size": worker.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": 2,
        "block_cache_size": worker.rocksdb_block_cache_mb << 20,
        "target_file_size_base": 16 << 20,
    }
    partitions = settings.kafka.partitions
    orders = app.Table("orders", key_type=bytes, value_type=bytes, partitions=partitions, options=rocks)
    due = app.Table("due-index", key_type=bytes, value_type=bytes, partitions=partitions, options=rocks)
    return orders, due


def build_worker(settings: Settings) -> Worker:
    """Create the Faust app and everything it runs (:func:`streams.agents.register` puts it to work)."""
    clock = settings.sim.clock()
    app = build_app(settings)
    topics = build_topics(app, settings)
    orders_table, due_table = build_tables(app, settings)
    scanner = DueScanner(budget=settings.worker.timer_budget)
    directory = SellerDirectory(connection=settings.kafka, topic=SELLERS.named(settings.kafka.topic_prefix))
    sink = TopicSink(topics)
    clients = SpApiClients(settings, clock)
    sender = Sender(
        sellers=directory,
        client_for=clients,
        cipher=_cipher(settings),
        sink=sink,
        clock=clock,
        config=settings.sender,
        commands_topic=topics.commands.get_topic_name(),
    )

    def policy_of(seller_id: str) -> SellerPolicy | None:
        seller = directory.get(seller_id)
        return seller.policy if seller is not None else None

    processor = OrdersProcessor(
        store=TableStore(orders_table, due_table),
        emitter=TopicEmitter(topics),
        policies=policy_of,
        clock=clock,
        timing=settings.timing,
        scanner=scanner,
        changes_topic=topics.changes.get_topic_name(),
    )
    directory.subscribe(lambda change: sender.seller_changed(change.seller_id))
    worker = Worker(
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
        sink=sink,
        clients=clients,
    )
    return worker


def _cipher(settings: Settings) -> TokenCipher | None:
    try:
        return TokenCipher(settings.secret_key)
    except SecretKeyError as exc:
        log.error("%s: sends will be deferred until it is configured", exc)
        return None
