"""When to raise and when to resolve an alert: the signals a worker collects, and the engine that decides.

The engine is pure: :meth:`AlertEngine.evaluate` is given the time, the :class:`SignalCollector` (what the sender
reported: each result, each seller's last problem, the worker's dead letters) and the statistics of the sellers
(:class:`SellerStats`), and returns the :class:`~streams.alerts.Alert` events due now. It never publishes: the wiring
sends what it returns to the ``alerts`` topic (:mod:`streams.alert_feed`). Every raise and resolve it returns is also
logged once (WARNING / INFO).

Each alert is raised once and resolved once: an open alert is not raised again, and the resolve thresholds sit below
the raise thresholds (hysteresis), so a rate hovering around its threshold does not flap. An alert about a seller is
decided only by the worker that owns the seller (the sender's owner, ``owned(seller_id)``), so each is decided once
in the group; a dead-letter alert is about the worker itself. At start, :meth:`AlertEngine.restore` loads the open
alerts read back from the topic, so a restart never raises one twice; :meth:`AlertEngine.observe` applies later
events of other workers (a seller that moved here after a rebalance keeps its open alerts).

Messages and details hold seller ids, counts and thresholds only: never a token or buyer data.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from statemachine.events import SendResult, SendResultKind
from streams.alerts import Alert, AlertKind, SellerProblem

__all__ = [
    "DEAD_LETTER_WINDOW",
    "AlertEngine",
    "AlertSettings",
    "CallCounts",
    "ProblemState",
    "SellerStats",
    "SignalCollector",
    "latest_alerts",
]

log = logging.getLogger(__name__)

DEAD_LETTER_WINDOW = timedelta(minutes=5)
"""The dead-letter rate is measured over this window."""
MAX_RESULTS_PER_SELLER = 10_000
"""At most this many results per seller are kept for the error window (the rate is over the latest ones)."""

Details = dict[str, str | int | float]


class AlertSettings(BaseModel):
    """When alerts are raised and resolved (``SOLICIT_ALERTS__*``; docs/operations.md, "Alerts")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_window: timedelta = Field(
        default=timedelta(minutes=15), gt=timedelta(0), description="Window of a seller's SP-API error rate."
    )
    error_rate: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="error_rate is raised above this share of failed send attempts; resolved below half of it.",
    )
    error_min_calls: int = Field(
        default=20, ge=1, description="Fewest send attempts in the window for an error rate to count."
    )
    deadline_hours: float = Field(
        default=48.0, gt=0, description="deadline_near counts unsent orders whose window closes within these hours."
    )
    deadline_min_orders: int = Field(
        default=1, ge=1, description="deadline_near is raised from this many such orders; resolved at none."
    )
    no_sends_days: float = Field(
        default=3.0, gt=0, description="no_sends: nothing sent for a seller for these days while orders were eligible."
    )
    dead_letter_per_minute: float = Field(
        default=10.0,
        gt=0,
        description="dead_letters is raised above this many dead letters a minute (over 5 min); resolved below half.",
    )
    evaluate_interval: float = Field(default=30.0, gt=0, description="Real seconds between evaluations of alerts.")


@dataclass(frozen=True, slots=True)
class SellerStats:
    """One seller's counters for the stats-based alerts, filled by the wiring for the configured windows."""

    seller_id: str
    closing_unsent: int
    """Orders not yet solicited whose window closes within ``deadline_hours``."""
    eligible_recent: int
    """Unsent orders that have been in their window for at least ``no_sends_days`` (0 for a paused or dry-run
    seller: not sending is what it was told to do)."""
    sent_recent: int
    """Solicitations sent in the last ``no_sends_days``."""


@dataclass(frozen=True, slots=True)
class CallCounts:
    """A seller's send attempts in the error window."""

    total: int
    failed: int

    @property
    def rate(self) -> float:
        return self.failed / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class ProblemState:
    """What the sender last said about acting for a seller: ``problem`` while one stands; ``cleared`` once a call
    succeeded after it. Neither when nothing is known (since start, or since the seller was forgotten)."""

    problem: SellerProblem | None = None
    cleared: bool = False


_FAILED = frozenset({SendResultKind.RETRYABLE_FAILURE, SendResultKind.PERMANENT_FAILURE})
_NOT_ATTEMPTED = frozenset({SendResultKind.NOT_ENABLED})
_SUCCEEDED = frozenset(
    {
        SendResultKind.SENT,
        SendResultKind.NOT_YET_AVAILABLE,
        SendResultKind.NOT_AVAILABLE,
        SendResultKind.OUTSIDE_WINDOW,
        SendResultKind.DRY_RUN,
        SendResultKind.PERMANENT_FAILURE,  # 400/404: Amazon accepted the seller's authorization
    }
)
"""Results that prove a call for the seller went through its authorization: they clear the seller's problem."""


@dataclass(slots=True)
class _Seller:
    problem: ProblemState = field(default_factory=ProblemState)
    calls: deque[tuple[datetime, bool]] = field(default_factory=lambda: deque(maxlen=MAX_RESULTS_PER_SELLER))


class SignalCollector:
    """What the sender and the dead-letter path report, kept for the engine (the sender's ``SendObserver``).

    Memory follows the sellers with recent results or a standing problem: :meth:`expire` (called by every
    evaluation) drops results older than the error window and sellers left with neither.
    """

    def __init__(self, settings: AlertSettings, now: Callable[[], datetime]) -> None:
        self._window = settings.error_window
        self._now = now
        self._sellers: dict[str, _Seller] = {}
        # Enough to see twice the raise threshold; more would only cost memory.
        limit = max(1000, int(settings.dead_letter_per_minute * DEAD_LETTER_WINDOW.total_seconds() / 60 * 2) + 1)
        self._dead_letters: deque[datetime] = deque(maxlen=limit)

    def send_result(self, result: SendResult, problem: SellerProblem | None) -> None:
        """One result of the sender for a seller, with the problem that deferred it (None when there was none)."""
        seller = self._sellers.setdefault(result.seller_id, _Seller())
        if problem is not None:
            seller.problem = ProblemState(problem=problem)
        elif result.result in _SUCCEEDED:
            seller.problem = ProblemState(cleared=True)
        deferred = result.result is SendResultKind.DEFERRED
        if result.result in _NOT_ATTEMPTED or (deferred and problem is None):
            return  # no call was attempted (paused, unknown seller, marketplace not enabled)
        seller.calls.append((self._now(), result.result in _FAILED or deferred))

    def dead_lettered(self, at: datetime | None = None) -> None:
        """One record of this worker went to the dead-letter topic (at ``at``, default now)."""
        self._dead_letters.append(at if at is not None else self._now())

    def forget_problem(self, seller_id: str) -> None:
        """Nothing is known any more about acting for the seller (its token changed)."""
        seller = self._sellers.get(seller_id)
        if seller is not None:
            seller.problem = ProblemState()

    def forget_seller(self, seller_id: str) -> None:
        """Drop everything about the seller (it left the registry)."""
        self._sellers.pop(seller_id, None)

    def sellers(self) -> list[str]:
        """The sellers with signals."""
        return list(self._sellers)

    def problem(self, seller_id: str) -> ProblemState:
        seller = self._sellers.get(seller_id)
        return seller.problem if seller is not None else ProblemState()

    def calls(self, seller_id: str, now: datetime) -> CallCounts:
        """The seller's send attempts in the error window ending at ``now``."""
        seller = self._sellers.get(seller_id)
        if seller is None:
            return CallCounts(0, 0)
        start = now - self._window
        recent = [failed for at, failed in seller.calls if at > start]
        return CallCounts(len(recent), sum(recent))

    def dead_letters(self, now: datetime) -> int:
        """This worker's dead letters in the :data:`DEAD_LETTER_WINDOW` ending at ``now``."""
        start = now - DEAD_LETTER_WINDOW
        return sum(1 for at in self._dead_letters if at > start)

    def expire(self, now: datetime) -> None:
        """Drop what no window needs any more, and the sellers left with nothing recent and no problem."""
        start = now - self._window
        for seller_id, seller in list(self._sellers.items()):
            while seller.calls and seller.calls[0][0] <= start:
                seller.calls.popleft()
            if not seller.calls and seller.problem.problem is None:
                del self._sellers[seller_id]
        while self._dead_letters and self._dead_letters[0] <= now - DEAD_LETTER_WINDOW:
            self._dead_letters.popleft()

    def __len__(self) -> int:
        """How many sellers are tracked."""
        return len(self._sellers)


_PROBLEM_KINDS = (AlertKind.AUTHORIZATION_REVOKED, AlertKind.ACCESS_DENIED, AlertKind.CONFIGURATION)

_PROBLEM_TEXT = {
    SellerProblem.AUTHORIZATION_REVOKED: (
        "LWA refused the seller's refresh token (invalid_grant): the seller must authorize the app again, then be "
        "re-imported with the new token"
    ),
    SellerProblem.ACCESS_DENIED: "Amazon denied access (403): check the app's roles and the seller's account",
    SellerProblem.APP_CREDENTIALS_REJECTED: "LWA rejected the application's client id or secret",
    SellerProblem.NO_CREDENTIALS: "no LWA application is configured under the seller's app name",
    SellerProblem.NO_SECRET_KEY: "SOLICIT_SECRET_KEY is not set, so refresh tokens cannot be decrypted",
    SellerProblem.UNDECRYPTABLE_TOKEN: "no key of SOLICIT_SECRET_KEY decrypts the seller's refresh token",
}


def problem_kind(problem: SellerProblem) -> AlertKind:
    """The alert a seller problem raises."""
    if problem is SellerProblem.AUTHORIZATION_REVOKED:
        return AlertKind.AUTHORIZATION_REVOKED
    if problem is SellerProblem.ACCESS_DENIED:
        return AlertKind.ACCESS_DENIED
    return AlertKind.CONFIGURATION


def _problem_message(seller_id: str, problem: SellerProblem) -> str:
    if problem_kind(problem) is AlertKind.CONFIGURATION:
        return f"the service cannot act for seller {seller_id}: {_PROBLEM_TEXT[problem]}"
    return f"seller {seller_id}: {_PROBLEM_TEXT[problem]}"


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What one condition says now: raise (True), resolve (False) or leave as it is (None), and why."""

    kind: AlertKind
    subject: str
    seller_id: str | None
    verdict: bool | None
    message: str
    details: Details = field(default_factory=dict)


class AlertEngine:
    """Decides the raises and resolves due now; remembers which alerts are open (see the module docstring)."""

    def __init__(self, settings: AlertSettings, worker_id: str) -> None:
        self._settings = settings
        self._worker_id = worker_id
        self._latest: dict[str, Alert] = {}
        self._changed: set[str] = set()
        self._removed: set[str] = set()
        self._started: datetime | None = None

    # --- state ----------------------------------------------------------------------------------------------------

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Load the latest event of each alert id, as read back from the topic at start (:func:`latest_alerts`)."""
        for alert in alerts:
            self.observe(alert)

    def observe(self, alert: Alert) -> None:
        """Apply an event read from the topic (any worker's). An event older than the one known is ignored, so the
        echo of this engine's own raise never reopens what it resolved since."""
        known = self._latest.get(alert.alert_id)
        if known is None or alert.at > known.at:
            self._latest[alert.alert_id] = alert

    def open_alerts(self) -> list[Alert]:
        """The raise of every open alert, by alert id."""
        return [alert for _, alert in sorted(self._latest.items()) if alert.status == "raised"]

    def seller_changed(self, seller_id: str) -> None:
        """The seller's registry record changed its token: its authorization and configuration alerts are resolved
        at the next evaluation (and raised again if the next call still fails)."""
        self._changed.add(seller_id)

    def seller_removed(self, seller_id: str) -> None:
        """The seller left the registry: every open alert about it is resolved at the next evaluation, and its
        signals are dropped."""
        self._removed.add(seller_id)

    def _is_open(self, alert_id: str) -> bool:
        known = self._latest.get(alert_id)
        return known is not None and known.status == "raised"

    # --- evaluation -----------------------------------------------------------------------------------------------

    def evaluate(
        self,
        now: datetime,
        signals: SignalCollector,
        stats: Iterable[SellerStats],
        owned: Callable[[str], bool],
    ) -> list[Alert]:
        """The raise and resolve events due now: for the sellers this worker owns, and its own dead letters."""
        if self._started is None:
            self._started = now
        signals.expire(now)
        by_seller = {entry.seller_id: entry for entry in stats if owned(entry.seller_id)}
        verdicts: list[_Verdict] = []
        for seller_id in sorted(self._sellers_to_check(signals, by_seller, owned)):
            verdicts.extend(self._seller_verdicts(now, seller_id, signals, by_seller.get(seller_id)))
        verdicts.append(self._dead_letter_verdict(signals.dead_letters(now)))
        self._changed.clear()  # a change of a seller another worker owns is that worker's to handle
        self._removed.clear()
        events = [event for verdict in verdicts if (event := self._apply(now, verdict)) is not None]
        for event in events:
            _log(event)
        return events

    def _sellers_to_check(
        self, signals: SignalCollector, by_seller: dict[str, SellerStats], owned: Callable[[str], bool]
    ) -> set[str]:
        with_alerts = {alert.seller_id for alert in self.open_alerts() if alert.seller_id is not None}
        candidates = set(signals.sellers()) | set(by_seller) | with_alerts | self._changed | self._removed
        return {seller_id for seller_id in candidates if owned(seller_id)}

    def _seller_verdicts(
        self, now: datetime, seller_id: str, signals: SignalCollector, stats: SellerStats | None
    ) -> list[_Verdict]:
        if seller_id in self._removed:
            signals.forget_seller(seller_id)
            return self._changed_verdicts(seller_id, removed=True)
        if seller_id in self._changed:
            signals.forget_problem(seller_id)
            return self._changed_verdicts(seller_id, removed=False)
        verdicts = self._problem_verdicts(seller_id, signals.problem(seller_id))
        verdicts.append(self._error_rate_verdict(now, seller_id, signals.calls(seller_id, now)))
        if stats is not None:
            verdicts.append(self._deadline_verdict(stats))
            verdicts.append(self._no_sends_verdict(stats))
        return verdicts

    def _changed_verdicts(self, seller_id: str, *, removed: bool) -> list[_Verdict]:
        if removed:
            kinds: tuple[AlertKind, ...] = tuple(kind for kind in AlertKind if kind is not AlertKind.DEAD_LETTERS)
            why = f"seller {seller_id} was removed from the registry"
        else:
            kinds = _PROBLEM_KINDS
            why = f"seller {seller_id}'s registry record changed (a new token); raised again if calls still fail"
        return [_Verdict(kind, seller_id, seller_id, False, why) for kind in kinds]

    def _problem_verdicts(self, seller_id: str, state: ProblemState) -> list[_Verdict]:
        if state.problem is not None:
            wanted = problem_kind(state.problem)
            message = _problem_message(seller_id, state.problem)
            details: Details = {"problem": state.problem.value}
            other = f"seller {seller_id} has another problem now: {state.problem.value}"
            return [
                _Verdict(kind, seller_id, seller_id, True, message, details)
                if kind is wanted
                else _Verdict(kind, seller_id, seller_id, False, other, details)
                for kind in _PROBLEM_KINDS
            ]
        if state.cleared:
            why = f"a call for seller {seller_id} succeeded"
            return [_Verdict(kind, seller_id, seller_id, False, why) for kind in _PROBLEM_KINDS]
        return []

    def _error_rate_verdict(self, now: datetime, seller_id: str, calls: CallCounts) -> _Verdict:
        settings = self._settings
        details: Details = {
            "failed": calls.failed,
            "calls": calls.total,
            "threshold": settings.error_rate,
            "window_s": settings.error_window.total_seconds(),
        }
        summary = f"{calls.failed} of seller {seller_id}'s last {calls.total} send attempts failed"
        verdict: bool | None = None
        if calls.total >= settings.error_min_calls and calls.rate > settings.error_rate:
            verdict = True
        elif calls.total >= settings.error_min_calls and calls.rate < settings.error_rate / 2:
            verdict = False
        elif calls.total < settings.error_min_calls and self._watched_a_whole_window(now):
            verdict, summary = False, f"{summary}: too few to judge"
        return _Verdict(AlertKind.ERROR_RATE, seller_id, seller_id, verdict, summary, details)

    def _watched_a_whole_window(self, now: datetime) -> bool:
        """After a restart the signals are empty: an open error_rate is not resolved for "too few results" before
        this engine has seen a whole window."""
        return self._started is not None and now - self._started >= self._settings.error_window

    def _deadline_verdict(self, stats: SellerStats) -> _Verdict:
        settings = self._settings
        count = stats.closing_unsent
        verdict = True if count > 0 and count >= settings.deadline_min_orders else False if count == 0 else None
        message = (
            f"seller {stats.seller_id} has {count} unsent order(s) whose window closes within "
            f"{settings.deadline_hours:g} h"
        )
        details: Details = {"orders": count, "hours": settings.deadline_hours}
        return _Verdict(AlertKind.DEADLINE_NEAR, stats.seller_id, stats.seller_id, verdict, message, details)

    def _no_sends_verdict(self, stats: SellerStats) -> _Verdict:
        days = self._settings.no_sends_days
        verdict = True if stats.eligible_recent > 0 and stats.sent_recent == 0 else False if stats.sent_recent else None
        message = (
            f"nothing was sent for seller {stats.seller_id} for {days:g} day(s) although "
            f"{stats.eligible_recent} order(s) have been in their window that long"
            if verdict
            else f"seller {stats.seller_id} sent {stats.sent_recent} solicitation(s) in the last {days:g} day(s)"
        )
        details: Details = {"eligible": stats.eligible_recent, "sent": stats.sent_recent, "days": days}
        return _Verdict(AlertKind.NO_SENDS, stats.seller_id, stats.seller_id, verdict, message, details)

    def _dead_letter_verdict(self, count: int) -> _Verdict:
        limit = self._settings.dead_letter_per_minute
        per_minute = count / (DEAD_LETTER_WINDOW.total_seconds() / 60)
        verdict = True if per_minute > limit else False if per_minute < limit / 2 else None
        message = f"worker {self._worker_id}: {count} dead letter(s) in the last 5 minutes ({per_minute:g}/min)"
        details: Details = {"dead_letters": count, "per_minute": per_minute, "threshold_per_minute": limit}
        return _Verdict(AlertKind.DEAD_LETTERS, self._worker_id, None, verdict, message, details)

    def _apply(self, now: datetime, verdict: _Verdict) -> Alert | None:
        """The event a verdict makes (a raise of a closed alert, a resolve of an open one), recorded; else None."""
        if verdict.verdict is None:
            return None
        alert_id = f"{verdict.kind.value}:{verdict.subject}"
        if verdict.verdict == self._is_open(alert_id):
            return None
        status: Literal["raised", "resolved"] = "raised" if verdict.verdict else "resolved"
        event = Alert(
            alert_id=alert_id,
            kind=verdict.kind,
            status=status,
            seller_id=verdict.seller_id,
            subject=verdict.subject,
            message=verdict.message,
            at=now,
            details=verdict.details,
        )
        self._latest[alert_id] = event
        return event


def _log(alert: Alert) -> None:
    level = logging.WARNING if alert.status == "raised" else logging.INFO
    log.log(
        level,
        "alert %s: %s (kind %s, seller %s): %s",
        alert.status,
        alert.alert_id,
        alert.kind.value,
        alert.seller_id or "-",
        alert.message,
        extra={"alert_id": alert.alert_id, "alert_kind": alert.kind.value, "seller_id": alert.seller_id},
    )


def latest_alerts(records: Iterable[bytes]) -> dict[str, Alert]:
    """The latest event of each alert id among ``records`` (values of the alerts topic, in topic order); a record
    that is not an :class:`Alert` is skipped (counted in one WARNING, its value never logged)."""
    latest: dict[str, Alert] = {}
    skipped = 0
    for value in records:
        try:
            alert = Alert.model_validate_json(value)
        except ValidationError:
            skipped += 1
            continue
        latest[alert.alert_id] = alert
    if skipped:
        log.warning("alerts: skipped %d record(s) that are not alerts", skipped)
    return latest
