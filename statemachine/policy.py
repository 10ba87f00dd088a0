"""Eligibility and timing policy: pure functions of an order's dates, the seller's settings and ``now``.

The rules (``docs/amazon-facts.md`` §7):

* **Window.** Amazon accepts a solicitation from ``EarliestDeliveryDate + 5 d`` to ``LatestDeliveryDate + 30 d``.
  Without a LatestDeliveryDate we use the EarliestDeliveryDate for both ends (the shorter, safe window).
* **Send time.** A seller sends ``delay_days`` after the EarliestDeliveryDate (default 5, the first allowed
  moment), clamped into the window.
* **No delivery dates** (FBA/AFN orders: Amazon does not send them; any other order missing them): the window
  is *estimated* from the shipment time: earliest delivery ``afn_transit_days`` after shipping (default 3),
  latest ``afn_max_transit_days`` after shipping (default 7), giving a first check at
  ``ship + 3 d + delay`` and a deadline of ``ship + 7 d + 30 d``. The estimate only schedules API checks; the
  API's answer decides.
* **Re-checks.** "Not yet available" inside the window leads to another check ``recheck_interval`` later (24 h
  by default, like Amazon's reference implementation), until the deadline; never to a give-up before it.
* **Send hours.** Optionally a seller sends only between ``start_hour`` and ``end_hour`` in the marketplace's
  local time (``statemachine.marketplaces``); due times move to the next allowed hour. If that would pass the
  deadline, the unmoved time is kept: a send outside the preferred hours beats no send at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from statemachine.marketplaces import marketplace

WINDOW_OPENS_AFTER = timedelta(days=5)
"""Amazon: the window opens five days after the EarliestDeliveryDate."""
WINDOW_CLOSES_AFTER = timedelta(days=30)
"""Amazon: the window closes thirty days after the LatestDeliveryDate."""
MAX_DELAY_DAYS = 29.0
"""The longest delay after the EDD that still leaves a day of Amazon's window (an order whose latest delivery date is
its earliest one has 30 days after it); a longer delay would never send, so the registry refuses it."""


class SendHours(BaseModel):
    """Local hours ``[start_hour, end_hour)`` in which sends may happen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start_hour >= self.end_hour:
            raise ValueError("send_hours.start_hour must be before end_hour (no overnight ranges)")
        return self


DelayDays = Annotated[float, Field(ge=0, le=MAX_DELAY_DAYS)]


class MarketplacePolicy(BaseModel):
    """A seller's settings for one of its marketplaces: switch it off, or override the delay or the send hours.

    A field left out inherits the seller's own setting (``send_hours: null`` overrides it with "any time")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Solicit orders of this marketplace.")
    delay_days: DelayDays | None = Field(default=None, description="Overrides the seller's delay_days.")
    send_hours: SendHours | None = Field(default=None, description="Overrides the seller's send_hours.")


class SellerPolicy(BaseModel):
    """Per-seller settings, kept in the sellers registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delay_days: float = Field(
        default=5.0,
        ge=0,
        le=MAX_DELAY_DAYS,
        description=(
            f"Send this many days after the EDD (at most {MAX_DELAY_DAYS:g}: Amazon's window closes 30 days after the "
            "latest delivery date, and the last check needs its margin)."
        ),
    )
    send_hours: SendHours | None = Field(default=None, description="Local send hours; None = any time.")
    paused: bool = Field(default=False, description="Hold every send until resumed.")
    dry_run: bool = Field(default=False, description="Check eligibility but never send.")
    marketplaces: dict[str, MarketplacePolicy] = Field(
        default_factory=dict, description="Per-marketplace overrides (switch one off, another delay or send hours)."
    )

    def enabled(self, marketplace_id: str) -> bool:
        """Whether orders of ``marketplace_id`` may be solicited (not switched off)."""
        override = self.marketplaces.get(marketplace_id)
        return override is None or override.enabled

    def for_marketplace(self, marketplace_id: str) -> SellerPolicy:
        """This policy with ``marketplace_id``'s overrides applied."""
        override = self.marketplaces.get(marketplace_id)
        if override is None:
            return self
        overridden = override.model_fields_set & {"delay_days", "send_hours"}
        changes: dict[str, Any] = {str(name): getattr(override, name) for name in overridden}
        return self.model_copy(update=changes) if changes else self


class Timing(BaseModel):
    """Deployment-wide timing knobs (one set per deployment, from settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recheck_interval: timedelta = Field(
        default=timedelta(hours=24), gt=timedelta(0), description="Re-check after 'not yet available'."
    )
    lease_timeout: timedelta = Field(
        default=timedelta(minutes=30), gt=timedelta(0), description="Issue a command again when unanswered this long."
    )
    retry_initial: timedelta = Field(
        default=timedelta(minutes=5), gt=timedelta(0), description="First backoff after a failed send."
    )
    retry_max: timedelta = Field(
        default=timedelta(hours=6), gt=timedelta(0), description="Longest backoff after failed sends."
    )
    afn_transit_days: float = Field(default=3.0, ge=0, description="FBA: estimated days from shipment to delivery.")
    afn_max_transit_days: float = Field(
        default=7.0, ge=0, description="FBA: latest estimated delivery, in days after shipment."
    )
    pending_timeout: timedelta = Field(
        default=timedelta(days=60), gt=timedelta(0), description="Expire orders not shipped this long."
    )
    retention: timedelta = Field(
        default=timedelta(days=90), gt=timedelta(0), description="Keep finished orders this long, then purge."
    )
    last_check_margin: timedelta = Field(
        default=timedelta(hours=2),
        ge=timedelta(0),
        description=(
            "The last check is scheduled this long before the window closes, so timer lateness and the send queue "
            "cannot push it past the deadline."
        ),
    )
    history_limit: int = Field(default=20, ge=1, description="Transitions kept in an order's history.")
    notification_ids_limit: int = Field(default=32, ge=1, description="NotificationIds kept per order for dedup.")


class Policy(BaseModel):
    """Everything ``apply`` needs to decide: the seller's settings and the deployment's timing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seller: SellerPolicy = SellerPolicy()
    timing: Timing = Timing()


DEFAULT_POLICY = Policy()


class Window(BaseModel):
    """When a solicitation may be sent, and whether that is Amazon's window or our estimate of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime
    estimated: bool


def window_from_delivery(earliest: datetime, latest: datetime | None) -> Window:
    """Amazon's window for an order with delivery dates."""
    latest = latest if latest is not None and latest >= earliest else earliest
    return Window(start=earliest + WINDOW_OPENS_AFTER, end=latest + WINDOW_CLOSES_AFTER, estimated=False)


def estimated_delivery(shipped_at: datetime, timing: Timing) -> tuple[datetime, datetime]:
    """Estimated (earliest, latest) delivery of an order without delivery dates, from its shipment time."""
    return (
        shipped_at + timedelta(days=timing.afn_transit_days),
        shipped_at + timedelta(days=max(timing.afn_transit_days, timing.afn_max_transit_days)),
    )


def window_for(
    earliest_delivery: datetime | None,
    latest_delivery: datetime | None,
    shipped_at: datetime,
    timing: Timing,
) -> Window:
    """The order's window: Amazon's when delivery dates are known, else estimated from the shipment time."""
    if earliest_delivery is not None:
        return window_from_delivery(earliest_delivery, latest_delivery)
    earliest, latest = estimated_delivery(shipped_at, timing)
    return Window(start=earliest + WINDOW_OPENS_AFTER, end=latest + WINDOW_CLOSES_AFTER, estimated=True)


def last_check(window: Window, timing: Timing) -> datetime:
    """The latest time a check is scheduled for: ``last_check_margin`` before the window closes (never before it
    opens)."""
    return max(window.start, window.end - timing.last_check_margin)


def first_send_time(
    window: Window,
    earliest_delivery: datetime,
    policy: Policy,
    marketplace_id: str,
    seed: str = "",
) -> datetime:
    """When to check-and-send first: ``EDD + delay_days``, clamped into the window (up to its last check), moved
    into send hours (spread over them by ``seed``, the order key)."""
    latest = last_check(window, policy.timing)
    target = earliest_delivery + timedelta(days=policy.seller.delay_days)
    target = min(max(target, window.start), latest)
    return within_send_hours(target, policy.seller.send_hours, marketplace_id, deadline=latest, seed=seed)


def within_send_hours(
    when: datetime,
    hours: SendHours | None,
    marketplace_id: str,
    *,
    deadline: datetime,
    seed: str = "",
) -> datetime:
    """``when``, or a time in the next allowed local hours; unchanged if moving it would pass ``deadline``.

    A moved time is spread over the allowed hours by ``seed`` (stable per order), so the orders of a seller that
    came due overnight do not all fall due at ``start_hour`` and pile up behind its rate limit."""
    if hours is None:
        return when
    zone = _zone(marketplace_id)
    local = when.astimezone(zone)
    if hours.start_hour <= local.hour < hours.end_hour:
        return when
    day = local.date() if local.hour < hours.start_hour else local.date() + timedelta(days=1)
    opens = datetime(day.year, day.month, day.day, hours.start_hour, tzinfo=zone).astimezone(UTC)
    if opens > deadline:
        return when
    span = timedelta(hours=hours.end_hour - hours.start_hour) - timedelta(minutes=1)
    offset = span * ((_stable_hash(seed) % 10_000) / 10_000) if seed else timedelta(0)
    return min(opens + offset, deadline)


def retry_delay(failures: int, timing: Timing, jitter_seed: str) -> timedelta:
    """Capped exponential backoff after ``failures`` consecutive failures, with deterministic jitter.

    The jitter (up to +25 %) comes from ``jitter_seed`` (the order key), so retries of many orders spread out
    while ``apply`` stays a pure function.
    """
    exponent = min(max(failures - 1, 0), 30)
    base = min(timing.retry_initial * (1 << exponent), timing.retry_max)
    fraction = (_stable_hash(jitter_seed) % 1000) / 4000  # 0 .. 0.25
    return min(base * (1 + fraction), timing.retry_max)


def _zone(marketplace_id: str) -> ZoneInfo:
    found = marketplace(marketplace_id)
    return found.zone if found is not None else ZoneInfo("UTC")


def _stable_hash(text: str) -> int:
    """FNV-1a: stable across processes (``hash()`` is salted per process)."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value
