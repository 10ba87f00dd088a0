"""The funnel per seller and marketplace, kept as counters the orders agent moves with every record it writes.

Each worker counts the records of the partitions it owns: an order's *contribution* (its state, the day its window
opened, the hour its window closes while unsent) is taken out of the counters when its record changes and the new
one's put in (:meth:`PartitionStats.move`). Like the due index, the counters are derived: they are rebuilt from the
orders table when a partition is assigned (:meth:`PartitionStats.rebuild`), so a crash never leaves them wrong, and
answering ``/stats`` never scans orders. Workers exchange :meth:`PartitionStats.snapshot` s and sum them
(:func:`merge`), so any worker answers for the whole group.

Definitions (business time):

* **funnel**: orders by current state; ``received`` is every order known.
* **coverage** over N days: of the orders whose window opened in the last N days and that could be solicited (not
  pending, canceled or skipped), how many are sent now.
* **closing**: unsent orders (shipped, waiting, eligible) whose window closes within the next 48 hours.

Sends, 429s and dead letters are not order state: :class:`RecentActivity` counts them per seller in this process
(per minute, for the last day), and they are summed across workers the same way.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from statemachine import OrderRecord, OrderState

FUNNEL_STATES: tuple[str, ...] = tuple(state.value for state in OrderState if state is not OrderState.NEW)
UNSENT_OPEN = frozenset({OrderState.SHIPPED.value, OrderState.WAITING.value, OrderState.ELIGIBLE.value})
SENT = OrderState.SENT.value
SCHEDULED = frozenset({OrderState.SHIPPED.value, OrderState.WAITING.value})
NOT_SOLICITABLE = frozenset({OrderState.PENDING.value, OrderState.CANCELED.value, OrderState.SKIPPED.value})
COVERAGE_DAYS: tuple[int, ...] = (1, 7, 30)
CLOSING_HOURS = 48
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400
HOUR = 3_600


@dataclass(frozen=True)
class Contribution:
    """What one order record adds to the counters."""

    seller_id: str
    marketplace_id: str
    state: str
    opened_day: int | None
    """Epoch day its window opened, when it could be solicited."""
    closing_hour: int | None
    """Epoch hour its window closes, while it is unsent and open."""
    due_day: int | None = None
    """Epoch day of its next check (shipped or waiting): the forecast."""
    sent_day: int | None = None
    """Epoch day it was sent (the last transition of a sent order)."""

    @classmethod
    def of(cls, record: OrderRecord) -> Contribution:
        return cls.parts(
            record.seller_id,
            record.marketplace_id,
            record.state.value,
            record.window_start,
            record.window_end,
            record.next_due,
            record.history[-1].at if record.state is OrderState.SENT and record.history else None,
        )

    @classmethod
    def from_json(cls, value: bytes) -> Contribution | None:
        """From a stored record's JSON without validating the whole record (the rebuild reads every record: a million
        at a restart). The fields are picked out with one regular expression (:func:`_picked`, a third of the cost of
        parsing, issue 12 P4); a record laid out otherwise (spaces, escapes, no history) is parsed in full."""
        try:
            picked = _picked(value)
            return cls._parsed(value) if picked is None else cls.parts(*picked)
        except ValueError:  # a date that is not one: unreadable, as in the full parse
            return None

    @classmethod
    def _parsed(cls, value: bytes) -> Contribution | None:
        try:
            data = json.loads(value)
            return cls.parts(
                data["seller_id"],
                data["marketplace_id"],
                data["state"],
                _time(data.get("window_start")),
                _time(data.get("window_end")),
                _time(data.get("next_due")),
                _time(data["history"][-1].get("at")) if data["state"] == SENT and data.get("history") else None,
            )
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def parts(
        cls,
        seller_id: str,
        marketplace_id: str,
        state: str,
        start: datetime | None,
        end: datetime | None,
        next_due: datetime | None = None,
        sent_at: datetime | None = None,
    ) -> Contribution:
        opened = int(start.timestamp()) // DAY if start is not None and state not in NOT_SOLICITABLE else None
        closing = int(end.timestamp()) // HOUR if end is not None and state in UNSENT_OPEN else None
        due = int(next_due.timestamp()) // DAY if next_due is not None and state in SCHEDULED else None
        sent = int(sent_at.timestamp()) // DAY if sent_at is not None else None
        return cls(seller_id, marketplace_id, state, opened, closing, due, sent)


def _iso_day(day: int) -> str:
    return (EPOCH + timedelta(days=day)).date().isoformat()


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


_FIELDS = re.compile(rb'"(seller_id|marketplace_id|state|window_start|window_end|next_due)":("[^"\\]*"|null)')
_ORDER = (b"seller_id", b"marketplace_id", b"state", b"window_start", b"window_end", b"next_due")
"""The fields :func:`_picked` reads, in the order the record's model declares (and writes) them."""
_HISTORY, _LAST_ENTRY, _AFTER_HISTORY = b',"history":[', b'{"at":"', b'],"applied_notifications":'
Picked = tuple[str, str, str, datetime | None, datetime | None, datetime | None, datetime | None]


def _picked(value: bytes) -> Picked | None:
    """The arguments of :meth:`Contribution.parts` from a record as this service writes it (compact JSON, the fields
    in :data:`_ORDER` before ``history``, a transition's ``at`` first), or None when it is laid out otherwise.

    Sound because inside a JSON string every ``"`` is escaped: ``"state":"`` can only be a key; a field found twice
    or out of order (a nested object a later version might add) sends the record to the full parse."""
    head = value.find(_HISTORY)
    if head < 0:
        return None
    pairs: list[tuple[bytes, bytes]] = _FIELDS.findall(value, 0, head)
    if len(pairs) != len(_ORDER) or tuple(name for name, _ in pairs) != _ORDER:
        return None
    (_, seller), (_, marketplace), (_, state), (_, start), (_, end), (_, due) = pairs
    if b"null" in (seller, marketplace, state):
        return None
    sent_at = None
    if state == b'"sent"':
        close = value.find(_AFTER_HISTORY, head)
        last = value.rfind(_LAST_ENTRY, head, close) if close >= 0 else -1
        if last < 0:
            return None
        last += len(_LAST_ENTRY)
        sent_at = _time(value[last : value.index(b'"', last)].decode())
    text = seller[1:-1].decode(), marketplace[1:-1].decode(), state[1:-1].decode()
    return *text, _token_time(start), _token_time(end), _token_time(due), sent_at


def _token_time(token: bytes) -> datetime | None:
    return None if token == b"null" else datetime.fromisoformat(token[1:-1].decode())


@dataclass
class Tally:
    """The counters of one seller and marketplace on one partition."""

    states: Counter[str] = field(default_factory=Counter)
    opened: Counter[int] = field(default_factory=Counter)
    """Solicitable orders by the day their window opened."""
    solicited: Counter[int] = field(default_factory=Counter)
    """Of those, the ones sent, by the same day."""
    closing: Counter[int] = field(default_factory=Counter)
    """Unsent open orders by the hour their window closes."""
    due: Counter[int] = field(default_factory=Counter)
    """Scheduled checks by day."""
    sent_on: Counter[int] = field(default_factory=Counter)
    """Sent orders by the day they were sent."""
    unsent_opened: Counter[int] = field(default_factory=Counter)
    """Unsent open orders (shipped, waiting, eligible) by the day their window opened."""

    def add(self, c: Contribution, sign: int) -> None:
        _bump(self.states, c.state, sign)
        if c.opened_day is not None:
            _bump(self.opened, c.opened_day, sign)
            if c.state == OrderState.SENT.value:
                _bump(self.solicited, c.opened_day, sign)
        if c.closing_hour is not None:
            _bump(self.closing, c.closing_hour, sign)
        if c.due_day is not None:
            _bump(self.due, c.due_day, sign)
        if c.sent_day is not None:
            _bump(self.sent_on, c.sent_day, sign)
        if c.opened_day is not None and c.state in UNSENT_OPEN:
            _bump(self.unsent_opened, c.opened_day, sign)

    def empty(self) -> bool:
        return not self.states

    def to_json(self) -> dict[str, dict[str, int]]:
        """The counters, JSON-ready (day and hour keys as strings)."""
        return {name: {str(key): n for key, n in getattr(self, name).items()} for name in TALLY_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, dict[str, int]]) -> Tally:
        """The inverse of :meth:`to_json`; ValueError, KeyError or TypeError on anything else."""
        tally = cls(states=Counter({str(k): int(n) for k, n in data["states"].items()}))
        for name in TALLY_FIELDS[1:]:
            setattr(tally, name, Counter({int(k): int(n) for k, n in data[name].items()}))
        return tally


TALLY_FIELDS = ("states", "opened", "solicited", "closing", "due", "sent_on", "unsent_opened")


def _bump(counter: Counter[Any], key: Any, sign: int) -> None:
    value = counter[key] + sign
    if value:
        counter[key] = value
    else:
        del counter[key]


Scope = tuple[str, str]
"""(seller id, marketplace id)."""


class PartitionStats:
    """The counters of every partition this worker owns, by seller and marketplace."""

    def __init__(self) -> None:
        self._partitions: dict[int, dict[Scope, Tally]] = {}
        self._complete: set[int] = set()
        """Partitions counted from their records since they came (a move alone does not make a partition complete:
        the agent may move an order of a partition whose rebuild has not run yet)."""

    def move(self, partition: int, before: OrderRecord | None, after: OrderRecord | None) -> None:
        """An order's record changed from ``before`` to ``after`` (None: absent)."""
        old = Contribution.of(before) if before is not None else None
        new = Contribution.of(after) if after is not None else None
        if old != new:
            self._apply(partition, old, -1)
            self._apply(partition, new, +1)

    def rebuild(self, partition: int, contributions: Iterable[Contribution]) -> int:
        """Replace ``partition``'s counters; the number of records counted."""
        self._partitions[partition] = {}
        count = 0
        for contribution in contributions:
            self._apply(partition, contribution, +1)
            count += 1
        self._complete.add(partition)
        return count

    def export(self, partition: int) -> list[list[Any]]:
        """``partition``'s counters, JSON-ready: ``[seller id, marketplace id, tally]`` each (:meth:`restore`)."""
        return [
            [seller, marketplace, t.to_json()]
            for (seller, marketplace), t in self._partitions.get(partition, {}).items()
        ]

    def restore(self, partition: int, exported: list[list[Any]]) -> None:
        """Replace ``partition``'s counters with ``exported`` (:meth:`export`), which then count as complete;
        ValueError, KeyError or TypeError (nothing changed) when it is not an export."""
        tallies = {(str(seller), str(marketplace)): Tally.from_json(data) for seller, marketplace, data in exported}
        self._partitions[partition] = tallies
        self._complete.add(partition)

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._complete.discard(partition)

    def counted(self) -> set[int]:
        """The partitions whose counters are complete (rebuilt from their records since they came)."""
        return set(self._complete)

    def snapshot(self, now: datetime, alert: AlertWindows | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """seller -> marketplace -> summary (:func:`summarize`) over this worker's partitions, JSON-ready."""
        merged: dict[Scope, Tally] = defaultdict(Tally)
        for tallies in self._partitions.values():
            for scope, tally in tallies.items():
                target = merged[scope]
                target.states.update(tally.states)
                target.opened.update(tally.opened)
                target.solicited.update(tally.solicited)
                target.closing.update(tally.closing)
                target.due.update(tally.due)
                target.sent_on.update(tally.sent_on)
                target.unsent_opened.update(tally.unsent_opened)
        result: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for (seller_id, marketplace_id), tally in merged.items():
            result[seller_id][marketplace_id] = summarize(tally, now, alert)
        return dict(result)

    def forecast(self, seller_id: str, now: datetime, days: int) -> dict[str, int]:
        """Checks scheduled per day (ISO date) for the next ``days`` days; overdue ones count for today."""
        today = int(now.timestamp()) // DAY
        counts: Counter[int] = Counter({day: 0 for day in range(today, today + days)})
        for tallies in self._partitions.values():
            for (seller, _marketplace), tally in tallies.items():
                if seller != seller_id:
                    continue
                for day, n in tally.due.items():
                    if day < today + days:
                        counts[max(day, today)] += n
        return {_iso_day(day): n for day, n in sorted(counts.items())}

    def _apply(self, partition: int, c: Contribution | None, sign: int) -> None:
        if c is None:
            return
        tallies = self._partitions.setdefault(partition, {})
        scope = (c.seller_id, c.marketplace_id)
        tally = tallies.get(scope)
        if tally is None:
            tally = tallies[scope] = Tally()
        tally.add(c, sign)
        if tally.empty():
            del tallies[scope]


@dataclass(frozen=True)
class AlertWindows:
    """The windows the alerts look at (``SOLICIT_ALERTS__DEADLINE_HOURS``, ``__NO_SENDS_DAYS``)."""

    closing_hours: float
    recent_days: float


def summarize(tally: Tally, now: datetime, alert: AlertWindows | None = None) -> dict[str, Any]:
    """One scope's counters as numbers: funnel, coverage per window, closing within 48 h; with ``alert``, the
    counts the alerts need under ``"alert"``: unsent orders closing within its hours; unsent open orders whose window
    opened at least its days ago (``stale``), and orders sent within its days (``sent``)."""
    today = int(now.timestamp()) // DAY
    hour = int(now.timestamp()) // HOUR
    funnel = {state: tally.states.get(state, 0) for state in FUNNEL_STATES}
    funnel["received"] = sum(tally.states.values())
    coverage = {}
    for days in COVERAGE_DAYS:
        first = today - days + 1
        coverage[f"{days}d"] = {
            "eligible": sum(n for day, n in tally.opened.items() if first <= day <= today),
            "solicited": sum(n for day, n in tally.solicited.items() if first <= day <= today),
        }
    closing = sum(n for h, n in tally.closing.items() if hour <= h < hour + CLOSING_HOURS)
    overdue = sum(n for h, n in tally.closing.items() if h < hour)
    summary = {"funnel": funnel, "coverage": coverage, "closing_48h_unsent": closing, "past_window_unsent": overdue}
    if alert is not None:
        until = hour + max(1, int(alert.closing_hours))
        days = max(1, int(alert.recent_days))
        summary["alert"] = {
            "closing": sum(n for h, n in tally.closing.items() if hour <= h < until),
            "stale": sum(n for day, n in tally.unsent_opened.items() if day <= today - days),
            "sent": sum(n for day, n in tally.sent_on.items() if day > today - days),
        }
    return summary


def empty_summary() -> dict[str, Any]:
    """A summary of nothing (every number zero)."""
    return summarize(Tally(), EPOCH)


def merge(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum summaries (numbers add up, nested dicts merge, ratios are recomputed by :func:`with_ratios`)."""
    total: dict[str, Any] = {}
    for part in parts:
        _add_into(total, part)
    return total


def _add_into(target: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, Mapping):
            _add_into(target.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            target[key] = target.get(key, 0) + value


def with_ratios(summary: dict[str, Any]) -> dict[str, Any]:
    """Add ``ratio`` (solicited / eligible, None when nothing became eligible) to each coverage window."""
    for window in summary.get("coverage", {}).values():
        eligible = window.get("eligible", 0)
        window["ratio"] = round(window.get("solicited", 0) / eligible, 4) if eligible else None
    return summary


class RecentActivity:
    """Per-seller counts of things that are not order state (sends, 429s, dead letters), per minute for a day.

    In memory: a restarted worker starts from zero (the funnel, from records, does not)."""

    KINDS = ("sent", "throttled", "dead_lettered")

    def __init__(self, horizon: timedelta = timedelta(days=1)) -> None:
        self._minutes = int(horizon.total_seconds()) // 60
        self._events: dict[tuple[str, str], deque[list[int]]] = {}
        self._totals: Counter[tuple[str, str]] = Counter()

    def record(self, seller_id: str, kind: str, at: datetime) -> None:
        minute = int(at.timestamp()) // 60
        buckets = self._events.setdefault((seller_id, kind), deque())
        if buckets and buckets[-1][0] == minute:
            buckets[-1][1] += 1
        else:
            buckets.append([minute, 1])
        while buckets and buckets[0][0] <= minute - self._minutes:
            buckets.popleft()
        self._totals[(seller_id, kind)] += 1

    def snapshot(self, now: datetime) -> dict[str, dict[str, dict[str, int]]]:
        """seller -> {"sends": {"1h", "1d"}, "throttled": {...}, "dead_lettered": n (since start)}."""
        minute = int(now.timestamp()) // 60
        result: dict[str, dict[str, Any]] = defaultdict(dict)
        for (seller_id, kind), buckets in self._events.items():
            if kind == "dead_lettered":
                continue
            name = "sends" if kind == "sent" else kind
            result[seller_id][name] = {
                "1h": sum(n for m, n in buckets if m > minute - 60),
                "1d": sum(n for m, n in buckets if m > minute - self._minutes),
            }
        for (seller_id, kind), n in self._totals.items():
            if kind == "dead_lettered":
                result[seller_id]["dead_lettered"] = n
        return dict(result)
