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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TableT, TopicT

from connectors.clock import Clock
from connectors.crypto import SecretKeyError, TokenCipher
from connectors.spapi import AppCredentials, SolicitationsClient
from statemachine import SellerPolicy, SendCommand, SendResult, SendStarted, StateChanged
from streams import rocks
from streams.command_feed import CommandFeed, OffsetTracker
from streams.deadletters import DeadLetter
from streams.delivery import OffsetGuard, stop_worker
from streams.directory import SellerDirectory
from streams.dueindex import DueFiring, DueScanner, LocalDueIndex, active_partitions
from streams.orders import Delivery, OrdersProcessor, TableStore
from streams.outcomes import SendAttempt
from streams.reconcile import DailyReconciliation, OrderChangesPublisher, OrdersClients, Reconciler
from streams.sender import Sender
from streams.settings import Settings
from streams.stats import PartitionStats
from streams.topics import DEAD_LETTERS, ORDER_CHANGES, ORDER_EVENTS, OUTCOMES, SELLERS, SEND_COMMANDS
from streams.watch import Watch

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
    on_dead_letter: Callable[[DeadLetter], None] = lambda letter: None
    """Told about every dead letter sent (metrics, alerts)."""

    async def publish(self, topic: TopicT, key: str, value: bytes, partition: int | None = None) -> Delivery:
        """Send now (never attached to the current event); the delivery resolves once Kafka acknowledged it."""
        return await topic.send(key=key.encode(), value=value, partition=partition, force=True)

    async def dead_letter(self, letter: DeadLetter) -> Delivery:
        self.on_dead_letter(letter)
        key = letter.key.encode() if letter.key is not None else None
        return await self.dead_letters.send(key=key, value=letter.to_json(), force=True)

    def named(self, name: str) -> TopicT:
        """The topic called ``name`` (``order-changes`` or ``order-events``)."""
        return self.changes if name == self.changes.get_topic_name() else self.events


class TopicEmitter:
    """Where the orders agent's output goes; each send returns its delivery (the agent acks once all resolved)."""

    def __init__(self, topics: Topics, on_outcome: Callable[[StateChanged], None] = lambda change: None) -> None:
        self.topics = topics
        self.on_outcome = on_outcome

    async def command(self, command: SendCommand) -> Delivery:
        return await self.topics.publish(self.topics.commands, command.seller_id, command.model_dump_json().encode())

    async def outcome(self, event: StateChanged) -> Delivery:
        self.on_outcome(event)
        return await self.topics.publish(self.topics.outcomes, event.order_key, event.model_dump_json().encode())

    async def dead_letter(self, letter: DeadLetter) -> Delivery:
        return await self.topics.dead_letter(letter)

    async def reroute(self, topic: str, partition: int, key: bytes, value: bytes) -> Delivery:
        return await self.topics.named(topic).send(key=key, value=value, partition=partition, force=True)


class TopicSink:
    """Where the sender and the timer publish (from their own tasks, outside stream iteration).

    The sender's methods return once Kafka acknowledged the record: a command is settled only after its result is
    safe, and a create call goes out only after its :class:`SendStarted` is."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    async def started(self, started: SendStarted) -> None:
        await (await self.topics.publish(self.topics.events, started.key, started.model_dump_json().encode()))

    async def result(self, result: SendResult) -> None:
        await (await self.topics.publish(self.topics.events, result.key, result.model_dump_json().encode()))

    async def attempt(self, attempt: SendAttempt) -> None:
        payload = attempt.model_dump_json().encode()
        await (await self.topics.publish(self.topics.outcomes, attempt.order_key, payload))

    async def dead_letter(self, letter: DeadLetter) -> None:
        await (await self.topics.dead_letter(letter))

    async def firing(self, firing: DueFiring, partition: int) -> None:
        """A timer firing goes to the order's own partition of ``order-events`` (where its record lives); a lost
        one is handed out again by the scanner."""
        await self.topics.publish(self.topics.events, firing.key, firing.model_dump_json().encode(), partition)


@dataclass
class SpApiClients:
    """One SP-API client per LWA application, made on first use."""

    settings: Settings
    clock: Clock
    watch: Watch | None = None
    """Told about every HTTP attempt and failed token exchange (metrics, 429 counts)."""
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
                observer=self.watch.observe_call if self.watch is not None else None,
                lwa_observer=self.watch.observe_lwa_failure if self.watch is not None else None,
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
    app: ServiceApp
    topics: Topics
    orders_table: TableT[bytes, bytes]
    index: LocalDueIndex
    scanner: DueScanner
    directory: SellerDirectory
    sender: Sender
    processor: OrdersProcessor
    sink: TopicSink
    clients: SpApiClients
    feed: CommandFeed
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the sellers registry is loaded; the agents and the timer wait for it."""
    indexed: set[int] = field(default_factory=set)
    """Active partitions whose due index was rebuilt since they were assigned."""
    guard: OffsetGuard = field(default_factory=OffsetGuard)
    """Keeps the orders agent reading every offset in order (:class:`streams.delivery.OffsetGuard`)."""
    reconciliation: DailyReconciliation | None = None
    """The daily Orders API reconciliation of the sellers this worker's sender owns (``SOLICIT_RECONCILE__DAILY``)."""
    stats: PartitionStats = field(default_factory=PartitionStats)
    """The funnel counters of the active partitions (:mod:`streams.stats`), moved by the orders processor."""
    watch: Watch | None = None
    """Metrics, recent activity and alerts (:mod:`streams.watch`)."""

    def active_partitions(self) -> list[int]:
        """The partitions of the orders table this worker owns now (not its standbys)."""
        changelog = self.orders_table.changelog_topic.get_topic_name()
        return sorted(active_partitions(self.app.assignor.assigned_actives(), changelog))


HANDLED = "solicit_handled"
"""Set on an event once everything it caused is confirmed: only such an event may be acknowledged."""


def harden_faust() -> None:
    """Three of Faust's shortcuts would commit offsets past records that were never processed; close them.

    * During a rebalance Faust's stream skips the events it had buffered from the previous generation (or while flow
      control is off) *and acknowledges them* "so the lag does not grow", even in a ``noack()`` stream; the next
      commit then moves past records nobody processed (seen in the chaos suite: 38 orders lost). Here an event is
      acknowledged only when it was marked :data:`HANDLED` (:func:`acknowledge`); a skipped one is read again from
      the committed offset after the rebalance.
    * Faust's consumer treats a jump in the offsets it reads as a compaction gap and counts the missing offsets as
      acknowledged. Our stream topics are never compacted nor transactional, so a jump means the client skipped
      records: stop the worker instead (:func:`streams.delivery.stop_worker`), and the next start reads them again.
    * Faust's commit accepts acknowledged offsets that start one past the committed offset: see
      :func:`committable_offset`, which replaces it.
    """
    import faust.streams
    from faust.events import Event
    from faust.transport.consumer import Consumer

    if getattr(Event.ack, "_solicit", False):
        return
    original_ack = Event.ack

    def ack(self: Any) -> bool:
        return bool(original_ack(self)) if getattr(self, HANDLED, False) else False

    accelerated = faust.streams._CStreamIterator  # type: ignore[attr-defined]
    if accelerated is not None:  # Faust's Cython iterator acknowledges inline, without Event.ack

        class NoImplicitAcks(accelerated):  # type: ignore[misc, valid-type]
            def after(self, event: Any, do_ack: bool, sensor_state: Any) -> Any:
                return super().after(event, False, sensor_state)  # acknowledged by acknowledge() only

        faust.streams._CStreamIterator = NoImplicitAcks  # type: ignore[attr-defined]

    def new_offset(self: Any, tp: Any) -> int | None:
        return committable_offset(self._acked[tp], self._acked_index[tp], self._committed_offset[tp])

    async def add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        stop_worker(f"records {offset_from}..{offset_to - 1} of {tp.topic}[{tp.partition}] were skipped by the client")

    ack._solicit = True  # type: ignore[attr-defined]
    Event.ack = ack  # type: ignore[method-assign]
    Consumer._add_gap = add_gap  # type: ignore[method-assign]
    Consumer._new_offset = new_offset  # type: ignore[method-assign]


def committable_offset(acked: list[int], acked_index: set[int], committed: int | None) -> int | None:
    """The offset to commit for a partition: one past the run of acknowledged offsets that starts exactly at the
    committed one (the next to read), or None while that offset itself is not acknowledged.

    Replaces Faust's ``Consumer._new_offset``, which accepts a run starting one past the committed offset (its test is
    ``min(acked) - committed > 1``) and any run at all while the committed offset is unknown or 0: our agent
    acknowledges records out of order (a record without outputs at once, one with a write once its changelog is
    confirmed), so Faust committed past a record still in flight, and a crash lost it (seen in the chaos suite: a
    canceled order's record lost, the order later re-created as pending). ``committed`` is None only before the first
    record of a partition without a committed offset: then :func:`anchor` has not run yet and nothing is committed.
    Offsets below ``committed`` (acknowledged again after a replay) are dropped; ``acked`` is consumed in place."""
    if not acked or committed is None:
        return None
    acked.sort()
    stale = 0
    while stale < len(acked) and acked[stale] < committed:
        stale += 1
    if stale:
        acked_index.difference_update(acked[:stale])
        del acked[:stale]
    end = committed
    while end - committed < len(acked) and acked[end - committed] == end:
        end += 1
    if end == committed:
        return None
    acked_index.difference_update(acked[: end - committed])
    del acked[: end - committed]
    return end


def anchor(app: faust.App, topic: str, partition: int, offset: int) -> None:
    """Tell Faust's consumer where a partition without a committed offset started: the first record the agent
    processed. From then on only runs of acknowledged offsets starting there are committed (:func:`committable_offset`).
    """
    from faust.types import TP

    committed = app.consumer._committed_offset  # type: ignore[attr-defined]
    if committed[TP(topic, partition)] is None:
        committed[TP(topic, partition)] = offset


def acknowledge(event: Any) -> None:
    """Acknowledge a stream event whose effects are all confirmed (see :func:`harden_faust`)."""
    setattr(event, HANDLED, True)
    event.ack()


def release(app: faust.App, event: Any) -> None:
    """Forget an event that will be read again (after a seek back) without acknowledging it, so a rebalance does not
    wait for it forever (Faust's consumer waits for every tracked, unacknowledged message)."""
    app.consumer._unacked_messages.discard(event.message)  # type: ignore[attr-defined]


async def seek_back(app: faust.App, topic: str, partition: int, offset: int) -> None:
    """Read ``topic[partition]`` again from ``offset``."""
    from faust.types import TP

    await app.consumer.seek(TP(topic, partition), offset)


def build_app(settings: Settings) -> ServiceApp:
    """The Faust app: at-least-once, RocksDB tables, our Kafka settings, our web API only; acknowledgements only
    from our agents (:func:`harden_faust`).

    Its consumer, producer and topic creation connect as every other client does: the same addresses, TLS and SASL
    settings (``broker_credentials`` from :meth:`connectors.kafka.KafkaConnection.faust_credentials`)."""
    harden_faust()
    return ServiceApp(settings.worker.app_id, **faust_options(settings))


class ServiceApp(faust.App):
    """Faust's app with one more moment to act at a clean shutdown: ``before_tables_stop`` callbacks run once the
    streams are drained (every event started is acknowledged, or the consumer stopped) and before the tables are
    closed. Faust has no signal there (``on_before_shutdown`` comes after the tables are closed); the override of
    its private ``_consumer_wait_empty`` (called at shutdown and at a rebalance) is pinned by a test
    (tests/unit/streams/test_checkpoint.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_tables_stop: list[Callable[[], None]] = []

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        await super()._consumer_wait_empty(consumer, logger)
        if self.should_stop:
            for callback in self.before_tables_stop:
                try:
                    callback()
                except Exception:  # a checkpoint not written costs a rebuild at the next start, nothing else
                    log.exception("a shutdown step before the tables close failed")


def faust_options(settings: Settings) -> dict[str, Any]:
    """Every Faust setting of the worker's app (also used by the bench's bare Faust agents, ``bench/ingest.py``, so
    that the worker is compared with Faust itself under the same settings)."""
    kafka = settings.kafka
    return {
        "broker": kafka.faust_broker(),
        "broker_credentials": kafka.faust_credentials(),
        "store": "rocksdb://",
        "datadir": str(settings.worker.state_dir()),
        "processing_guarantee": "at_least_once",
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
        "table_standby_replicas": settings.worker.standby_replicas,
        **_web_options(settings),
        "producer_acks": -1,
        "broker_session_timeout": kafka.session_timeout,
        "broker_heartbeat_interval": min(3.0, kafka.session_timeout / 3),
        "broker_rebalance_timeout": max(kafka.session_timeout, 30.0),
        # A sender lane awaits the SP-API for seconds; the agents themselves never block that long.
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        **PRODUCER_BATCHING,
    }


PRODUCER_BATCHING: dict[str, Any] = {"producer_linger": 0.05, "producer_max_batch_size": 256 * 1024}
"""A partition's records wait up to 50 ms to go out together (and up to 256 KiB of them): without it every send is
a produce request of its own, each far dearer than the record (P1 in docs/benchmarks.md: 10 ms helps, 50 ms more).
The price is latency, never safety: a record is still acknowledged only after its sends are confirmed, and the
sender's wait for its ``SendStarted`` before each SP-API call grows by up to 50 ms (hidden by the 1 request/s
quota)."""


def _web_options(settings: Settings) -> dict[str, Any]:
    """Faust's web server serves our API only (:mod:`streams.web.api`): its own table, router, graph and statistics
    views are off (they would answer unauthenticated)."""
    web = settings.web
    return {
        "web_enabled": web.enabled,
        "web_bind": web.bind,
        "web_port": web.port,
        "web_host": web.advertised_host,
        "canonical_url": web.url(),
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
    }


def build_topics(
    app: faust.App, settings: Settings, on_dead_letter: Callable[[DeadLetter], None] = lambda letter: None
) -> Topics:
    prefix, partitions = settings.kafka.topic_prefix, settings.kafka.partitions
    changes_name, events_name = ORDER_CHANGES.named(prefix), ORDER_EVENTS.named(prefix)
    return Topics(
        inbound=app.topic(changes_name, events_name, partitions=partitions, **_RAW),
        changes=app.topic(changes_name, partitions=partitions, **_RAW),
        events=app.topic(events_name, partitions=partitions, **_RAW),
        commands=app.topic(SEND_COMMANDS.named(prefix), partitions=partitions, **_RAW),
        outcomes=app.topic(OUTCOMES.named(prefix), partitions=partitions, **_RAW),
        dead_letters=app.topic(DEAD_LETTERS.named(prefix), partitions=partitions, **_RAW),
        on_dead_letter=on_dead_letter,
    )


def build_table(app: faust.App, settings: Settings) -> TableT[bytes, bytes]:
    """The ``orders`` table, with modest RocksDB options and one block cache and one memtable budget for all its
    partitions (:class:`streams.rocks.SharedMemoryOptions`; the due index is derived from it: ``streams.dueindex``)."""
    worker = settings.worker
    options = {
        "write_buffer_size": worker.rocksdb_write_buffer_mb << 20,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 << 20,
    }
    partitions = settings.kafka.partitions
    table = app.Table("orders", key_type=bytes, value_type=bytes, partitions=partitions, options=options)
    rocks.share_memory(
        table, block_cache_bytes=worker.rocksdb_block_cache_mb << 20, memtables_bytes=worker.rocksdb_memtables_mb << 20
    )
    return table


def build_worker(settings: Settings) -> Worker:
    """Create the Faust app and everything it runs (:func:`streams.agents.register` puts it to work)."""
    clock = settings.sim.clock()
    watch = Watch(clock=clock, alert_settings=settings.alerts, worker_id=settings.worker.id)
    app = build_app(settings)
    topics = build_topics(app, settings, watch.dead_letter)
    orders_table = build_table(app, settings)
    index = LocalDueIndex(settings.worker.state_dir() / "due-index")
    scanner = DueScanner(budget=settings.worker.timer_budget)
    directory = SellerDirectory(connection=settings.kafka, topic=SELLERS.named(settings.kafka.topic_prefix))
    stats = PartitionStats()
    sink = TopicSink(topics)
    clients = SpApiClients(settings, clock, watch)
    sender, feed = build_sender(settings, clock, topics, directory, sink, clients, watch)
    watch.metrics.known_sellers(directory.__contains__)
    processor = OrdersProcessor(
        store=TableStore(orders_table, index),
        emitter=TopicEmitter(topics, watch.outcome),
        policies=_policies(directory),
        clock=clock,
        timing=settings.timing,
        partitions=settings.kafka.partitions,
        scanner=scanner,
        changes_topic=topics.changes.get_topic_name(),
        events_topic=topics.events.get_topic_name(),
        stats=stats,
        observe=watch.input,
    )
    directory.subscribe(lambda change: sender.seller_changed(change.seller_id))
    directory.subscribe(watch.seller_changed)
    return Worker(
        settings=settings,
        clock=clock,
        app=app,
        topics=topics,
        orders_table=orders_table,
        index=index,
        scanner=scanner,
        directory=directory,
        sender=sender,
        processor=processor,
        sink=sink,
        clients=clients,
        feed=feed,
        reconciliation=build_reconciliation(settings, clock, directory, feed),
        stats=stats,
        watch=watch,
    )


def build_sender(
    settings: Settings,
    clock: Clock,
    topics: Topics,
    directory: SellerDirectory,
    sink: TopicSink,
    clients: SpApiClients,
    watch: Watch,
) -> tuple[Sender, CommandFeed]:
    """The sender and the command feed that hands it ``send-commands`` (its own consumer group)."""
    tracker = OffsetTracker()
    sender = Sender(
        sellers=directory,
        client_for=clients,
        cipher=_cipher(settings),
        sink=sink,
        clock=clock,
        config=settings.sender,
        commands_topic=topics.commands.get_topic_name(),
        done=tracker.settled,
        observers=[watch],
    )
    feed = CommandFeed(
        connection=settings.kafka,
        topic=topics.commands.get_topic_name(),
        group_id=f"{settings.worker.app_id}-sender",
        receive=lambda partition, offset, value: sender.receive(partition=partition, offset=offset, value=value),
        revoked=sender.revoke,
        tracker=tracker,
    )
    return sender, feed


def _policies(directory: SellerDirectory) -> Callable[[str], SellerPolicy | None]:
    def policy_of(seller_id: str) -> SellerPolicy | None:
        seller = directory.get(seller_id)
        return seller.policy if seller is not None else None

    return policy_of


def build_reconciliation(
    settings: Settings, clock: Clock, directory: SellerDirectory, feed: CommandFeed
) -> DailyReconciliation | None:
    """The daily reconciliation (:mod:`streams.reconcile`) of the sellers whose send-commands partition ``feed`` owns;
    None when ``SOLICIT_RECONCILE__DAILY`` is off."""
    if not settings.reconcile.daily:
        return None
    publisher = OrderChangesPublisher(settings.kafka, ORDER_CHANGES.named(settings.kafka.topic_prefix))
    clients = OrdersClients(settings.spapi, clock)
    reconciler = Reconciler(
        clients=clients, cipher=_cipher(settings), publish=publisher.publish, clock=clock, config=settings.reconcile
    )
    return DailyReconciliation(
        sellers=directory,
        owned_partitions=feed.assigned,
        partitions=settings.kafka.partitions,
        reconciler=reconciler,
        clock=clock,
        closers=(clients.aclose, publisher.stop),
    )


def _cipher(settings: Settings) -> TokenCipher | None:
    try:
        return TokenCipher(settings.secret_key)
    except SecretKeyError as exc:
        log.error("%s: sends will be deferred until it is configured", exc)
        return None
