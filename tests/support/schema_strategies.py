"""Hypothesis strategies built from Amazon's official ORDER_CHANGE JSON schema.

hypothesis-jsonschema does not work with the hypothesis versions schemathesis 4 needs, and the schema is
small, so this walks it directly: every required property is drawn, optional ones sometimes, enums from the
schema's own lists, ``["string", "null"]`` as either. Where the schema says only "string" but the field is a
date-time or an identifier, we draw real ISO-8601 date-times and ids of the documented format (the schema's
examples), and ``NotificationType`` is ``ORDER_CHANGE``. Objects sometimes carry unknown extra fields.
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from devstack import spapi_models

SCHEMA_PATH = spapi_models.ORDER_CHANGE_SCHEMA
EXAMPLE_PATH = spapi_models.ORDER_CHANGE_EXAMPLE

DATE_FIELDS = {
    "EventTime",
    "PublishTime",
    "TimeOfOrderChange",
    "PurchaseDate",
    "EarliestDeliveryDate",
    "LatestDeliveryDate",
    "EarliestShipDate",
    "LatestShipDate",
    "CancelNotifyDate",
    "ItemEarliestDeliveryDate",
    "ItemLatestDeliveryDate",
}

_ALNUM = string.ascii_letters + string.digits
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)), timezone(timedelta(hours=14))]
)


@st.composite
def iso_datetimes(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=_ZONES | st.none())
    )
    style = draw(st.sampled_from(["z", "offset", "millis", "naive"]))
    if moment.tzinfo is None or style == "naive":
        return moment.replace(tzinfo=None).isoformat()
    if style == "millis":
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if style == "z" else text


def _order_ids() -> st.SearchStrategy[str]:
    digits = st.text(string.digits, min_size=3, max_size=3)
    seven = st.text(string.digits, min_size=7, max_size=7)
    return st.builds(lambda a, b, c: f"{a}-{b}-{c}", digits, seven, seven)


SPECIAL_STRINGS: dict[str, st.SearchStrategy[Any]] = {
    "NotificationType": st.just("ORDER_CHANGE"),
    "SellerId": st.text(_ALNUM, min_size=1, max_size=20),
    "AmazonOrderId": _order_ids(),
    "MarketplaceId": st.sampled_from(["ATVPDKIKX0DER", "A1PA6795UKMFR9", "A1VC38T7YXB528", "AZZZZZZUNKNOWN"]),
    "NotificationId": st.uuids().map(str),
}

_EXTRA_FIELDS = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=12).map(lambda k: "Extra" + k),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    max_size=2,
)


def load_schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


def from_schema(schema: dict[str, Any], name: str = "", *, free_strings: bool = False) -> st.SearchStrategy[Any]:
    """A strategy for values valid under ``schema`` (see module docstring for the stricter fields).

    With ``free_strings`` every string is drawn from arbitrary text instead (still schema-valid).
    """
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*[from_schema({**schema, "type": k}, name, free_strings=free_strings) for k in kind])
    if "enum" in schema and kind != "array":
        return st.sampled_from(schema["enum"])
    if kind == "null":
        return st.none()
    if kind == "string":
        if free_strings and name != "NotificationType":
            return st.text(max_size=30)
        if name in DATE_FIELDS:
            return iso_datetimes()
        return SPECIAL_STRINGS.get(name, st.text(max_size=20))
    if kind == "integer":
        return st.integers(min_value=-(2**53), max_value=2**53)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), name, free_strings=free_strings), max_size=3)
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        req = {k: from_schema(v, k, free_strings=free_strings) for k, v in properties.items() if k in required}
        opt = {k: from_schema(v, k, free_strings=free_strings) for k, v in properties.items() if k not in required}
        base = st.fixed_dictionaries(req, optional=opt)
        return st.builds(lambda d, extra: {**extra, **d}, base, _EXTRA_FIELDS)
    raise AssertionError(f"schema kind not handled: {kind!r} at {name!r}")


def date_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Paths of every date field present (and not null) in a generated payload."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in DATE_FIELDS and isinstance(sub, str):
                found.append((*path, key))
            found += date_paths(sub, (*path, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            found += date_paths(sub, (*path, index))
    return found


def replace_at(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced."""
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: replace_at(value[head], tuple(rest), new)}
    copy = list(value)
    copy[int(head)] = replace_at(copy[int(head)], tuple(rest), new)
    return copy
