"""What a worker watches about itself: metrics, recent activity and alert signals, fed from one place.

:class:`Watch` holds the process's :class:`streams.metrics.Metrics`, :class:`streams.stats.RecentActivity`, the
alerts' :class:`streams.alerting.SignalCollector` and :class:`streams.alerting.AlertEngine`; the SP-API clients,
the sender and the orders processor report to it (:meth:`observe_call`, :meth:`send_result`, :meth:`input`,
:meth:`dead_letter`), and it passes each observation to every part that wants it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from connectors.clock import Clock
from connectors.spapi import CallObserved, LwaFailure
from statemachine import SendResult, SendResultKind, StateChanged
from streams.alerting import AlertEngine, AlertSettings, SellerStats, SignalCollector
from streams.alerts import Alert, SellerProblem
from streams.deadletters import DeadLetter
from streams.directory import SellerChange
from streams.dueindex import scan_due
from streams.metrics import Metrics
from streams.stats import RecentActivity

log = logging.getLogger(__name__)


@dataclass
class Watch:
    """The worker's observers (one per process)."""

    clock: Clock
    alert_settings: AlertSettings
    worker_id: str
    metrics: Metrics = field(default_factory=Metrics)
    activity: RecentActivity = field(default_factory=RecentActivity)
    recent_changes: deque[StateChanged] = field(default_factory=lambda: deque(maxlen=25))
    """The newest outcomes this worker published (the dashboard's "recent outcomes")."""
    signals: SignalCollector = field(init=False)
    alerts: AlertEngine = field(init=False)

    def __post_init__(self) -> None:
        self.signals = SignalCollector(self.alert_settings, self.clock.now)
        self.alerts = AlertEngine(self.alert_settings, self.worker_id)

    # --- observations ---------------------------------------------------------------------------------------

    def observe_call(self, call: CallObserved) -> None:
        """An SP-API HTTP attempt (from the clients)."""
        self.metrics.observe_call(call)
        if call.throttled:
            self.activity.record(call.seller_id, "throttled", self.clock.now())

    def observe_lwa_failure(self, failure: LwaFailure) -> None:
        self.metrics.observe_lwa_failure(failure)

    def send_result(self, result: SendResult, problem: SellerProblem | None) -> None:
        """A published send result (from the sender)."""
        self.metrics.send_result(result, problem)
        self.signals.send_result(result, problem)
        if result.result is SendResultKind.SENT:
            self.activity.record(result.seller_id, "sent", self.clock.now())

    def input(self, kind: str, seller_id: str | None) -> None:
        """An input record of the orders agent, by kind (from the processor)."""
        self.metrics.event_processed(kind)
        if kind == "dead_lettered" and seller_id is not None:
            self.activity.record(seller_id, "dead_lettered", self.clock.now())

    def seller_changed(self, change: SellerChange) -> None:
        """The registry changed: a new token resolves the seller's authorization alerts; a removal forgets it."""
        if change.after is None:
            self.alerts.seller_removed(change.seller_id)
        elif change.before is None or change.before.refresh_token_encrypted != change.after.refresh_token_encrypted:
            self.alerts.seller_changed(change.seller_id)

    def outcome(self, change: StateChanged) -> None:
        """An outcome the orders agent published."""
        self.recent_changes.append(change)

    def dead_letter(self, letter: DeadLetter) -> None:
        """A record sent to the dead-letter topic (by the agent or the sender)."""
        self.metrics.dead_lettered(letter.source, letter.reason)
        self.signals.dead_lettered(self.clock.now())

    # --- alerts ---------------------------------------------------------------------------------------------

    def evaluate(self, now: datetime, stats: Iterable[SellerStats], owned: Callable[[str], bool]) -> list[Alert]:
        """The alert events due now (raised or resolved once each)."""
        return self.alerts.evaluate(now, self.signals, stats, owned)


def observe_alert(watch: Watch, value: bytes | None) -> None:
    """A record of the alerts topic (any worker's): the engine learns which alerts are open."""
    if not value:
        return
    try:
        alert = Alert.model_validate_json(value)
    except ValidationError:
        log.warning("an unreadable record on the alerts topic was skipped")
        return
    watch.alerts.observe(alert)


def _highwater(consumer: Any, tp: Any) -> int | None:
    """The end offset of ``tp`` as the consumer last saw it; None before its first fetch of it."""
    try:
        end = consumer.highwater(tp)
    except Exception:  # aiokafka raises for a partition it has not fetched since the assignment
        return None
    return int(end) if end is not None else None


BACKLOG_CAP = 100_000
"""The due backlog gauge counts at most this many entries per partition (a scrape must stay cheap)."""


def refresh_gauges(worker: Any, metrics: Metrics) -> None:
    """At scrape time: each owned partition's due backlog and oldest due age, and the orders agent's lag."""
    now = worker.clock.now()
    for partition in worker.active_partitions():
        due = scan_due(worker.index.db(partition), start=b"", now=now, limit=BACKLOG_CAP)
        metrics.set_due_backlog(partition, len(due))
        oldest = (now.timestamp() * 1000 - due[0].due_ms) / 1000 if due else 0.0
        metrics.set_due_oldest_age(partition, max(0.0, oldest))
    consumer = worker.app.consumer
    for tp in consumer.assignment():
        committed = consumer._committed_offset.get(tp)
        end = _highwater(consumer, tp)
        if end is not None:
            metrics.set_consumer_lag(tp.topic, tp.partition, max(0, end - (committed or 0)))
