"""The worker's agents, its timer and its rebalance hooks: thin loops that hand each record to a processor.

* ``orders`` agent (concurrency 1, the only writer of order state) reads ``order-changes`` and ``order-events``
  (co-partitioned, keyed by order) and hands each record to :class:`streams.orders.OrdersProcessor`.
* ``send`` agent reads ``send-commands`` (keyed by seller) and hands each record to :class:`streams.sender.Sender`,
  whose per-seller lanes call the SP-API and publish results to ``order-events`` and ``outcomes``.
* ``fire_due`` timer (every ``SOLICIT_WORKER__TIMER_INTERVAL`` real seconds, on every worker): for each *active*
  partition, the due entries of the index (:mod:`streams.dueindex`) become timer firings on that partition of
  ``order-events``. Skipped while rebalancing or recovering; the results of a scan that straddled a rebalance are
  dropped.
* Both agents and the timer wait until the sellers registry is loaded (``load_sellers``).
"""

from __future__ import annotations

import logging
from typing import Any

from streams.app import Worker
from streams.dueindex import DueFiring, active_partitions, collect_due

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    """Register the agents, the timer and the hooks of ``worker`` on its Faust app."""
    _register_agents(worker)
    _register_timer(worker)
    _register_hooks(worker)


def _register_agents(w: Worker) -> None:
    app = w.app

    @app.task
    async def load_sellers() -> None:
        await w.directory.start()
        log.info("sellers registry loaded: %d seller(s); following changes", len(w.directory))
        w.ready.set()

    @app.agent(w.topics.inbound, name="orders", concurrency=1)
    async def orders(stream: Any) -> None:
        await w.ready.wait()
        async for event in stream.events():
            message = event.message
            try:
                await w.processor.handle(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                )
            except Exception:  # a bug must not stop every other order: log it and go on
                log.exception("orders agent failed on %s[%s]@%s", message.topic, message.partition, message.offset)

    @app.agent(w.topics.commands, name="send", concurrency=1)
    async def send(stream: Any) -> None:
        await w.ready.wait()
        async for event in stream.events():
            message = event.message
            await w.sender.receive(partition=message.partition, offset=message.offset, value=message.value)


def _register_timer(w: Worker) -> None:
    app = w.app
    due_changelog = w.due_table.changelog_topic.get_topic_name()

    @app.timer(w.settings.worker.timer_interval, name="fire_due")
    async def fire_due() -> None:
        if not w.ready.is_set() or app.rebalancing or app.in_recovery:
            return
        generation = app.consumer_generation_id
        partitions = active_partitions(app.assignor.assigned_actives(), due_changelog)
        batch = collect_due(w.scanner, w.due_table, partitions, w.clock.now(), w.clock.monotonic())
        if app.consumer_generation_id != generation or app.rebalancing:
            w.scanner.reset()
            return
        for partition, entry in batch:
            await w.sink.firing(DueFiring.of(entry), partition)


def _register_hooks(w: Worker) -> None:
    app = w.app
    due_changelog = w.due_table.changelog_topic.get_topic_name()
    commands_name = w.topics.commands.get_topic_name()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types the receiver too narrowly
    async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0]
        w.scanner.forget(tp.partition for tp in revoked if tp.topic == due_changelog)
        w.sender.revoke({tp.partition for tp in revoked if tp.topic == commands_name})

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        assigned: set[Any] = args[0]
        w.scanner.forget(tp.partition for tp in assigned if tp.topic == due_changelog)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_resources(sender: Any, *args: Any, **kwargs: Any) -> None:
        await w.sender.close()
        await w.clients.aclose()
        await w.directory.stop()
