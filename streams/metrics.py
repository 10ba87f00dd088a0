"""The worker's Prometheus metrics: what ``GET /metrics`` serves (``docs/observability.md`` lists each one).

One :class:`Metrics` owns its own :class:`~prometheus_client.CollectorRegistry` (never the global one), so a test or a
second worker in one process starts from zero. Its methods are the only way numbers get in:

* the orders agent calls :meth:`Metrics.event_processed` per input record and :meth:`Metrics.dead_lettered` per dead
  letter;
* the SP-API client is built with ``observer=metrics.observe_call, lwa_observer=metrics.observe_lwa_failure``
  (``connectors.spapi.observe``: the connector never imports ``streams``);
* the sender gets ``observers=[metrics]``: :class:`Metrics` is a :class:`streams.sender.SendObserver`;
* gauges of the moment (due backlog, oldest due age, consumer lag) are set by the scrape hook
  (:meth:`Metrics.set_scrape_hook`), which :meth:`Metrics.render` calls first.

Cardinality is bounded by construction: every label value comes from a fixed set (event kinds, reason classes,
HTTP statuses, operation ids) or from the sellers registry (:meth:`Metrics.known_sellers`: any other seller id is
``unknown``). No token, order id or free text is ever a label.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from connectors.spapi import LWA_FAILURE_REASONS, CallObserved, LwaFailure
from statemachine import SendResult
from streams.alerts import SellerProblem

__all__ = [
    "DEAD_LETTER_REASONS",
    "EVENT_KINDS",
    "SPAPI_LATENCY_BUCKETS",
    "UNKNOWN",
    "Metrics",
    "ScrapeHook",
    "reason_class",
]

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
"""The label value of a seller not in the registry (and of any value outside its fixed set)."""
APP = "app"
"""The ``seller_id`` of an LWA failure of the app's own (grantless) token."""

EVENT_KINDS = (
    "order_changed",
    "timer_fired",
    "send_started",
    "send_result",
    "manual",
    "rerouted",
    "dead_lettered",
)
"""What the orders agent did with one input record (``solicit_events_processed_total{kind}``)."""

DEAD_LETTER_REASONS = (
    "invalid_json",
    "invalid_notification",
    "too_large",
    "wrong_key",
    "not_an_order_event",
    "not_a_send_command",
    "cannot_be_applied",
    "spapi_rejected",
    "other",
)
"""Every value of :func:`reason_class`."""

SPAPI_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; the client's request timeout defaults to 10 s."""

_PREFIXES = (
    # Reasons that name their class in their first words (streams/orders.py, streams/sender.py).
    ("not an order event", "not_an_order_event"),
    ("not a send command", "not_a_send_command"),
    ("record key ", "wrong_key"),
    ("sp-api rejected the request", "spapi_rejected"),
    ("cannot be applied: recordtoolarge", "too_large"),
    ("cannot be applied", "cannot_be_applied"),
    # statemachine/parse.py: the body is no JSON object at all ...
    ("body is not json", "invalid_json"),
    ("body is not valid utf-8", "invalid_json"),
    ("body is empty", "invalid_json"),
    ("body must be", "invalid_json"),
    ("body is json-encoded", "invalid_json"),
    ("body is a double-encoded", "invalid_json"),
    ("body is a json string", "invalid_json"),
)
_TOO_LARGE = re.compile(r"^body is (\d+ bytes, )?more than ")
_NOTIFICATION = (
    # ... or it is JSON, but not the facts of a real order (statemachine/parse.py, statemachine/events.py).
    re.compile(r"^[A-Za-z_][\w.\[\]]*: "),  # a field path and what was wrong with it
    re.compile(r"outside the plausible range|^latestdeliverydate is before|^delivery dates are .* apart", re.I),
)


def reason_class(text: str) -> str:
    """The bounded class of a dead letter's free-text reason: one of :data:`DEAD_LETTER_REASONS`."""
    lowered = text.strip().lower()
    for prefix, label in _PREFIXES:
        if lowered.startswith(prefix):
            return label
    if _TOO_LARGE.match(lowered):
        return "too_large"
    if any(pattern.search(text.strip()) for pattern in _NOTIFICATION):
        return "invalid_notification"
    return "other"


ScrapeHook = Callable[["Metrics"], None]
"""Sets the gauges of the moment (``set_due_backlog``, ``set_due_oldest_age``, ``set_consumer_lag``) before a scrape."""


class Metrics:
    """The worker's metrics in their own registry; see the module docstring for who calls what."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._is_known: Callable[[str], bool] = lambda _seller_id: False
        self._hook: ScrapeHook | None = None
        self._counters()
        self._spapi()
        self._gauges()

    def _counters(self) -> None:
        registry = self.registry
        self.events_processed = Counter(
            "solicit_events_processed",
            "Input records the orders agent processed, by kind.",
            ["kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "solicit_dead_letters",
            "Records sent to the dead-letter topic, by source and reason class.",
            ["source", "reason"],
            registry=registry,
        )
        self.sends = Counter(
            "solicit_sends",
            "Send results the sender published, by seller and result.",
            ["seller_id", "result"],
            registry=registry,
        )

    def _spapi(self) -> None:
        registry = self.registry
        self.spapi_seconds = Histogram(
            "solicit_spapi_request_seconds",
            "Seconds of one SP-API HTTP attempt, by operation and HTTP status.",
            ["operation", "status"],
            buckets=SPAPI_LATENCY_BUCKETS,
            registry=registry,
        )
        self.spapi_throttled = Counter(
            "solicit_spapi_throttled",
            "SP-API attempts Amazon answered with 429, by seller and operation.",
            ["seller_id", "operation"],
            registry=registry,
        )
        self.lwa_failures = Counter(
            "solicit_lwa_failures",
            "LWA token exchanges that gave no token, by seller and reason.",
            ["seller_id", "reason"],
            registry=registry,
        )

    def _gauges(self) -> None:
        registry = self.registry
        self.due_backlog = Gauge(
            "solicit_due_backlog",
            "Due-index entries due now and not yet fired, by partition.",
            ["partition"],
            registry=registry,
        )
        self.due_oldest_age = Gauge(
            "solicit_due_oldest_age_seconds",
            "Seconds since the oldest unfired due entry became due, by partition.",
            ["partition"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "solicit_consumer_lag",
            "Records not yet processed (high watermark minus position), by topic and partition.",
            ["topic", "partition"],
            registry=registry,
        )

    # --- labels ---------------------------------------------------------------------------------------------

    def known_sellers(self, is_known: Callable[[str], bool]) -> None:
        """Sellers for which ``is_known(seller_id)`` is true get their own label value; all others are ``unknown``.

        Pass the registry, e.g. ``metrics.known_sellers(directory.__contains__)``. Until this is called every seller
        is ``unknown``, so no input can grow the label set."""
        self._is_known = is_known

    def _seller(self, seller_id: str) -> str:
        try:
            known = self._is_known(seller_id)
        except Exception:
            log.exception("the seller lookup of the metrics failed")
            known = False
        return seller_id if known else UNKNOWN

    # --- recording ------------------------------------------------------------------------------------------

    def event_processed(self, kind: str) -> None:
        """One input record of the orders agent, by kind (one of :data:`EVENT_KINDS`; anything else is ``unknown``)."""
        self.events_processed.labels(kind=kind if kind in EVENT_KINDS else UNKNOWN).inc()

    def dead_lettered(self, source: str, reason: str) -> None:
        """One dead letter: ``source`` is the topic (or ``sqs``) it came from, ``reason`` its free text (classified)."""
        self.dead_letters.labels(source=source, reason=reason_class(reason)).inc()

    def send_result(self, result: SendResult, problem: SellerProblem | None) -> None:
        """:class:`streams.sender.SendObserver`: one published send result (``problem`` is for the alerts)."""
        self.sends.labels(seller_id=self._seller(result.seller_id), result=result.result.value).inc()

    def observe_call(self, call: CallObserved) -> None:
        """``SolicitationsClient(observer=...)``: one SP-API HTTP attempt."""
        status = str(call.status) if call.status is not None else "none"
        self.spapi_seconds.labels(operation=call.operation, status=status).observe(call.seconds)
        if call.throttled:
            self.spapi_throttled.labels(seller_id=self._seller(call.seller_id), operation=call.operation).inc()

    def observe_lwa_failure(self, failure: LwaFailure) -> None:
        """``SolicitationsClient(lwa_observer=...)``: one failed LWA token exchange."""
        seller = APP if failure.seller_id is None else self._seller(failure.seller_id)
        reason = failure.reason if failure.reason in LWA_FAILURE_REASONS else "other"
        self.lwa_failures.labels(seller_id=seller, reason=reason).inc()

    # --- gauges of the moment -------------------------------------------------------------------------------

    def set_scrape_hook(self, hook: ScrapeHook | None) -> None:
        """``hook(metrics)`` runs before every :meth:`render` and sets the gauges below for what this worker owns now.

        The three gauges are cleared first, so partitions that moved to another worker disappear from the output."""
        self._hook = hook

    def set_due_backlog(self, partition: int, entries: int) -> None:
        self.due_backlog.labels(partition=str(partition)).set(entries)

    def set_due_oldest_age(self, partition: int, seconds: float) -> None:
        self.due_oldest_age.labels(partition=str(partition)).set(max(0.0, seconds))

    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0, lag))

    def render(self) -> tuple[bytes, str]:
        """Run the scrape hook, then the exposition text and its content type (for the ``/metrics`` response).

        A hook that raises is logged; the scrape still answers (with the gauges it set before failing)."""
        if self._hook is not None:
            for gauge in (self.due_backlog, self.due_oldest_age, self.consumer_lag):
                gauge.clear()
            try:
                self._hook(self)
            except Exception:
                log.exception("the metrics scrape hook failed")
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
