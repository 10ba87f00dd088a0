"""What one worker answers from its own state: an order's view, a page of a seller's orders, its statistics.

The API (:mod:`streams.web.api`) forwards a request to the worker that owns the order's partition, or asks every
worker and combines their answers (:mod:`streams.web.peers`); the functions here only read local state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from statemachine import OrderRecord, order_key
from streams import rocks
from streams.orders import decode_record, record_json
from streams.stats import UNSENT_OPEN

MAX_PAGE = 500
DEFAULT_PAGE = 50
HIDDEN_FIELDS = frozenset({"applied_notifications"})
"""Record fields the API does not show (internal bookkeeping)."""


def order_view(record: OrderRecord, partition: int) -> dict[str, Any]:
    """The order as the API shows it: every stored fact (there is no buyer data in a record), grouped for reading."""
    data = record.model_dump(mode="json", exclude=set(HIDDEN_FIELDS))
    view: dict[str, Any] = {"order_key": record.key, "partition": partition}
    view.update(data)
    view["window"] = {
        "start": data.pop("window_start"),
        "end": data.pop("window_end"),
        "estimated": data.pop("window_estimated"),
    }
    view["lease"] = {"id": data.pop("lease_id"), "expires_at": data.pop("lease_expires_at")}
    for moved in ("window_start", "window_end", "window_estimated", "lease_id", "lease_expires_at"):
        view.pop(moved, None)
    return view


def order_summary(record: dict[str, Any]) -> dict[str, Any]:
    """One line of an orders page."""
    return {
        "order_key": order_key(record["seller_id"], record["order_id"]),
        "order_id": record["order_id"],
        "marketplace_id": record.get("marketplace_id"),
        "state": record.get("state"),
        "window_end": record.get("window_end"),
        "next_due": record.get("next_due"),
        "last_reason": record.get("last_reason", ""),
    }


def list_orders(
    table: Any,
    partitions: Iterable[int],
    *,
    seller_id: str,
    now: datetime,
    state: str | None = None,
    closing_within: timedelta | None = None,
    after: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> list[dict[str, Any]]:
    """Up to ``limit`` of the seller's orders on ``partitions``, by order key, after the key ``after``."""
    prefix = f"{seller_id}/".encode()
    start = (after.encode() + b"\x00") if after else prefix
    until = now + closing_within if closing_within is not None else None
    found: list[dict[str, Any]] = []
    for partition in partitions:
        taken = 0
        for _key, value in rocks.scan_from(table, partition, start, prefix):
            record = _stored_json(value)
            if record is None or not _matches(record, state, until):
                continue
            found.append(order_summary(record))
            taken += 1
            if taken >= limit:
                break
    found.sort(key=lambda summary: summary["order_key"])
    return found[:limit]


def _stored_json(value: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(record_json(value))
    except ValueError:
        return None
    return data if isinstance(data, dict) and "seller_id" in data and "order_id" in data else None


def _matches(record: dict[str, Any], state: str | None, until: datetime | None) -> bool:
    if state is not None and record.get("state") != state:
        return False
    if until is not None:
        end = record.get("window_end")
        if record.get("state") not in UNSENT_OPEN or not isinstance(end, str):
            return False
        return datetime.fromisoformat(end) <= until
    return True


def read_order(table: Any, partition: int, key: str) -> OrderRecord | None:
    """The stored record of ``key`` on ``partition`` here, or None."""
    raw = rocks.get(table, partition, key.encode())
    return decode_record(raw) if raw is not None else None
