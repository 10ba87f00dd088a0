"""The worker's agents, its timer and its rebalance hooks: thin loops that hand each record to a processor.

* ``load_sellers`` task: loads the sellers registry, then starts the command feed; the agent and the timer wait
  for the registry.
* ``orders`` agent (concurrency 1, the only writer of order state) reads ``order-changes`` and ``order-events``
  (co-partitioned, keyed by order) and hands each record to :class:`streams.orders.OrdersProcessor`. It acknowledges
  a record only after its outputs and then its record write are confirmed (:mod:`streams.delivery`).
* ``fire_due`` timer (every ``SOLICIT_WORKER__TIMER_INTERVAL`` real seconds, on every worker): rebuilds the due index
  (and the funnel counters) of each newly assigned partition from the orders table, one read of the table per
  partition, firing after each and pausing for the other tasks between two; then, for each *active* partition,
  turns the due entries of the index (:mod:`streams.dueindex`) into timer firings on that partition of
  ``order-events``. Skipped while rebalancing or recovering; the results of a scan that straddled a rebalance are
  dropped. A periodic sweep rebuilds every partition's index again.
* The sender reads ``send-commands`` through its own consumer (:mod:`streams.command_feed`), not through Faust.
* ``reconcile_daily`` timer (every ``SOLICIT_RECONCILE__CHECK_INTERVAL`` real seconds): starts the daily Orders API
  reconciliation of the sellers whose send-commands partition this worker owns (:mod:`streams.reconcile`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from connectors.kafka import TopicFollower, group_offsets
from streams import rocks
from streams.alert_feed import AlertPublisher
from streams.app import Worker, acknowledge, anchor, release, seek_back
from streams.checkpoint import restore_partition, seal_partitions
from streams.delivery import ack_when_delivered, handle_with_retries, stop_worker
from streams.dueindex import DueEntry, DueFiring, IndexBuild, collect_due, index_key
from streams.orders import Handled, PendingWrite, partition_for, record_json
from streams.stats import Contribution
from streams.topics import ALERTS
from streams.watch import observe_alert, refresh_gauges
from streams.web.api import Api, register_api
from streams.web.auth import Tokens, internal_token
from streams.web.pages import register_dashboard
from streams.web.peers import Peers

log = logging.getLogger(__name__)


class FiringSink(Protocol):
    async def firing(self, firing: DueFiring, partition: int) -> None: ...


def register(worker: Worker) -> None:
    """Register the tasks, agent, timers and hooks of ``worker`` on its Faust app."""
    _register_startup(worker)
    _register_orders(worker)
    _register_timers(worker)
    _register_hooks(worker)
    _register_reconciliation(worker)
    if worker.settings.web.enabled:
        _register_web(worker)


def _register_web(w: Worker) -> None:
    """The HTTP API (docs/web-api.md) on Faust's web server, the alerts and the metrics' gauges."""
    web, watch = w.settings.web, w.watch
    assert watch is not None
    tokens = Tokens(web.tokens, internal=internal_token(w.settings.secret_key.get_secret_value().split(",")[0]))
    api = Api(worker=w, tokens=tokens, peers=Peers(w.app, web.url(), web.peer_timeout))
    api.extras.update(metrics=watch.metrics, alerts=watch.alerts)
    register_api(api)
    register_dashboard(api)
    watch.metrics.set_scrape_hook(lambda metrics: refresh_gauges(w, metrics))
    _register_alerts(w, api)


def _register_alerts(w: Worker, api: Api) -> None:
    """Every ``SOLICIT_ALERTS__EVALUATE_INTERVAL`` real seconds: evaluate the alerts of the sellers this worker's
    sender owns (and of the worker itself) and publish what was raised or resolved (:mod:`streams.alerting`)."""
    watch = w.watch
    assert watch is not None
    topic = ALERTS.named(w.settings.kafka.topic_prefix)
    publisher = AlertPublisher(w.settings.kafka, topic)
    follower = TopicFollower(w.settings.kafka, topic, lambda m: observe_alert(watch, m.value), client_id="alerts")

    @w.app.task
    async def follow_alerts() -> None:
        await w.ready.wait()
        while True:  # alerts are not worth a worker: retry until the topic can be read
            try:
                await follower.start(within=60)
                await publisher.start()
                return
            except Exception as exc:
                log.warning("the alerts topic cannot be followed yet (%s: %s); retrying", type(exc).__name__, exc)
                await follower.stop()
                await asyncio.sleep(30)

    @w.app.timer(w.settings.alerts.evaluate_interval, name="evaluate_alerts")
    async def evaluate_alerts() -> None:
        if not w.ready.is_set() or not follower.running:
            return
        owned = w.feed.assigned()
        partitions = w.settings.kafka.partitions
        mine = lambda seller_id: partition_for(seller_id.encode(), partitions) in owned  # noqa: E731
        events = watch.evaluate(w.clock.now(), await api.seller_signals(mine), mine)
        try:
            await publisher.publish(events)
        except Exception as exc:  # the events stay queued; the next evaluation sends them first
            log.warning(
                "alerts could not be published (%s: %s); they go out with the next evaluation", type(exc).__name__, exc
            )

    @w.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_alerts(sender: Any, *args: Any, **kwargs: Any) -> None:
        await follower.stop()
        await publisher.stop()


def _register_startup(w: Worker) -> None:
    @w.app.task
    async def load_sellers() -> None:
        await w.directory.start()
        log.info("sellers registry loaded: %d seller(s); following changes", len(w.directory))
        w.ready.set()
        await w.feed.start()


def _register_orders(w: Worker) -> None:
    @w.app.agent(w.topics.inbound, name="orders", concurrency=1)
    async def orders(stream: Any) -> None:
        await w.ready.wait()
        sought: dict[tuple[str, int], int] = {}
        async for event in stream.noack().events():
            message = event.message
            what = f"{message.topic}[{message.partition}]@{message.offset}"
            back = w.guard.ahead(message.topic, message.partition, message.offset)
            if back is not None:
                release(w.app, event)
                if sought.get((message.topic, message.partition)) != back:
                    log.warning("%s arrived before offset %d was read: reading again from %d", what, back, back)
                    sought[(message.topic, message.partition)] = back
                    await seek_back(w.app, message.topic, message.partition, back)
                continue
            anchor(w.app, message.topic, message.partition, message.offset)
            w.guard.processed(message.topic, message.partition, message.offset)
            handled = await handle_with_retries(functools.partial(_handle, w, message), what=what)
            write = handled.write
            if write is None:
                ack_when_delivered(handled.outputs, functools.partial(acknowledge, event), what=what)
            else:
                write.ack = functools.partial(acknowledge, event)
                ack_when_delivered(handled.outputs, functools.partial(_write, w, write), what=what)


async def _handle(w: Worker, message: Any) -> Handled:
    return await w.processor.handle(
        topic=message.topic, partition=message.partition, offset=message.offset, key=message.key, value=message.value
    )


def _write(w: Worker, pending: PendingWrite) -> None:
    """The outputs of an input are confirmed: write the records whose turn has come, ack each once written."""
    for written, delivery in w.processor.outputs_confirmed(pending):
        ack_when_delivered([delivery], written.ack, what=f"the record of {written.key}")


def _register_timers(w: Worker) -> None:
    app = w.app

    @app.timer(w.settings.worker.timer_interval, name="fire_due")
    async def fire_due() -> None:
        await timer_tick(w)

    @app.timer(w.settings.worker.index_sweep_interval, name="sweep_due_index")
    async def sweep_due_index() -> None:
        w.indexed.clear()  # rebuilt by the next tick, from the table: a safety net, cheap (no parsing)


async def publish_firings(sink: FiringSink, batch: list[tuple[int, DueEntry]]) -> int:
    """Publish the due entries as firings; how many went out. A send error must not crash the worker (issue 9.13):
    the scanner hands the entries that did not go out again after a while."""
    published = 0
    try:
        for partition, entry in batch:
            await sink.firing(DueFiring.of(entry), partition)
            published += 1
    except Exception as exc:
        log.warning("timer firings could not be published (%s: %s); they come again", type(exc).__name__, exc)
    return published


REBUILD_PAUSE = 0.01
"""Seconds the loop is left to the other tasks between two partitions' rebuilds: long enough for a heartbeat's
request and answer (a partition of 80,000 orders holds the loop for a second or more)."""


async def timer_tick(w: Worker) -> None:
    """One tick of the ``fire_due`` timer: fire what is due on the partitions whose index is complete. Stale ones (newly
    assigned, or swept) are rebuilt first, one at a time (:func:`rebuild_partition`), firing after each and pausing
    between two: a restart fires the first partition's timers at once and rebuilds the next without waiting for a
    tick. Nothing is done while the worker is not steady (not ready, rebalancing or recovering)."""
    app = w.app
    while w.ready.is_set() and not app.rebalancing and not app.in_recovery:
        stale = [p for p in w.active_partitions() if p not in w.indexed]
        if stale:
            rebuild_partition(w, stale[0])
        await fire_indexed(w)
        if len(stale) <= 1:
            return
        await asyncio.sleep(REBUILD_PAUSE)


async def fire_indexed(w: Worker) -> None:
    """Publish the due entries of the active partitions whose index is complete; the results of a scan that
    straddled a rebalance are dropped."""
    app = w.app
    generation = app.consumer_generation_id
    usable = [p for p in w.active_partitions() if p in w.indexed]
    batch = collect_due(w.scanner, w.index, usable, w.clock.now(), w.clock.monotonic())
    if app.consumer_generation_id != generation or app.rebalancing:
        w.scanner.reset()
        return
    await publish_firings(w.sink, batch)


def rebuild_partition(w: Worker, partition: int) -> None:
    """Rebuild ``partition``'s due index and, when they are missing, its funnel counters (:mod:`streams.stats`) from
    the orders table and the staged writes, reading the table once (issue 12 P4: a restart reads a million records);
    after a clean shutdown, both come from the partition's checkpoint instead (:mod:`streams.checkpoint`)."""
    counting = partition not in w.stats.counted()
    if counting and _restored(w, partition):
        log.info("partition %d: due index and funnel counters kept from the last clean shutdown", partition)
    else:
        with w.index.rebuilding(partition) as build:
            values = _indexed(build, _home_records(w, partition))
            counted = w.stats.rebuild(partition, _contributions(values)) if counting else sum(1 for _ in values)
        log.info(
            "partition %d rebuilt from the orders table: %d order(s), %d scheduled%s",
            partition,
            counted,
            build.count,
            "; funnel counters too" if counting else "",
        )
    staged = {record.key: record for record in w.processor.writes.staged(partition)}
    for record in staged.values():
        if record.next_due is not None:
            w.index.add(partition, index_key(record.next_due, record.key))
        if counting:  # decided, not yet written: counted as written (the write follows)
            w.stats.move(partition, w.processor.store.get(record.key, partition), record)
    w.scanner.forget([partition])
    w.indexed.add(partition)


def _restored(w: Worker, partition: int) -> bool:
    return restore_partition(
        w.index,
        w.stats,
        partition,
        offset_of=functools.partial(rocks.persisted_offset, w.orders_table),
        partition_count=w.settings.kafka.partitions,
    )


def seal_on_shutdown(w: Worker) -> None:
    """At a clean shutdown, streams drained, tables still open: checkpoint every active partition whose index and
    counters are complete and that has no decided write still waiting (:mod:`streams.checkpoint`)."""
    ready = [
        p
        for p in w.active_partitions()
        if p in w.indexed and p in w.stats.counted() and not w.processor.writes.staged(p)
    ]
    sealed = seal_partitions(
        w.index,
        w.stats,
        ready,
        offset_of=functools.partial(rocks.persisted_offset, w.orders_table),
        partition_count=w.settings.kafka.partitions,
    )
    log.info("checkpointed the due index and counters of %d partition(s) for the next start", len(sealed))


def _home_records(w: Worker, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """The records of ``partition``'s store that belong there (an older version stored some on another partition:
    their timers would fire on the wrong partition forever)."""
    partitions = w.settings.kafka.partitions
    for key, value in rocks.partition_items(w.orders_table, partition):
        if not key.startswith(b"__faust") and partition_for(key, partitions) == partition:
            yield key, value


def _indexed(build: IndexBuild, records: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
    """The stored value of each record, once ``build`` has its due entry."""
    for key, value in records:
        build.add(key, value)
        yield value


def _contributions(values: Iterable[bytes]) -> Iterator[Contribution]:
    for value in values:
        contribution = Contribution.from_json(record_json(value))
        if contribution is not None:
            yield contribution


def _register_hooks(w: Worker) -> None:
    app = w.app
    changelog = w.orders_table.changelog_topic.get_topic_name()

    inbound = {w.topics.changes.get_topic_name(), w.topics.events.get_topic_name()}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the receiver too narrowly
    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        moved = {tp.partition for tp in args[0] if tp.topic == changelog}
        w.scanner.forget(moved)
        w.indexed.difference_update(moved)
        w.stats.drop(moved)
        w.guard.revoked((tp.topic, tp.partition) for tp in args[0] if tp.topic in inbound)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        moved = {tp.partition for tp in args[0] if tp.topic == changelog}
        w.scanner.forget(moved)
        w.indexed.difference_update(moved)  # rebuilt from the table once recovery is done
        w.stats.drop(moved)
        sources = [(tp.topic, tp.partition) for tp in args[0] if tp.topic in inbound]
        try:
            w.guard.assigned(await group_offsets(w.settings.kafka, w.settings.worker.app_id, sources))
        except Exception as exc:  # without them the guard cannot vouch for the partitions: read them again
            stop_worker(f"the committed offsets of the assigned partitions could not be read: {exc}")

    app.before_tables_stop.append(functools.partial(seal_on_shutdown, w))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_resources(sender: Any, *args: Any, **kwargs: Any) -> None:
        await w.feed.stop()
        await w.sender.close(grace=w.settings.worker.shutdown_grace)
        await w.clients.aclose()
        await w.directory.stop()
        w.index.close()


def _register_reconciliation(w: Worker) -> None:
    daily = w.reconciliation
    if daily is None:
        return

    @w.app.timer(w.settings.reconcile.check_interval, name="reconcile_daily")
    async def reconcile_daily() -> None:
        if w.ready.is_set():
            daily.tick()

    @w.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_reconciliation(sender: Any, *args: Any, **kwargs: Any) -> None:
        await daily.stop()
