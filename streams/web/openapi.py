"""The web API's OpenAPI 3.1 description (``docs/openapi.json``), generated from pydantic models of every response
body, and :func:`response_problems`, which checks a body against it.

The handlers (:mod:`streams.web.api`, :mod:`streams.web.pages`) answer plain dicts; the models here only *describe*
those dicts. They stay true because tests feed them bodies built by the real code: the unit tests
(``tests/unit/streams/test_openapi.py``) through the real handlers, the end-to-end test with the running server's
answers. The shapes that follow code constants (the funnel's states, the coverage windows, the order record's fields)
are derived from those constants, so a change there changes the document and the test of the committed file fails
until ``python -m streams.web.openapi docs/openapi.json`` (``make docs``) is run.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from statemachine import OrderRecord, OrderState
from statemachine.events import StateChanged
from statemachine.types import IsoDateTime
from streams.alerts import Alert, AlertKind
from streams.stats import COVERAGE_DAYS, FUNNEL_STATES
from streams.web import dashboard
from streams.web.api import ACTIONS
from streams.web.auth import COOKIE
from streams.web.peers import FORWARDED
from streams.web.queries import DEFAULT_PAGE, HIDDEN_FIELDS, MAX_PAGE

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
API_VERSION = "1"
JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
SPEC_URI = "urn:solicit:openapi"
"""The base URI the spec is registered under when validating, so ``#/components/schemas/...`` references resolve."""


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent(description: str) -> Any:
    """A field that is either absent or of its type (never null): pair with ``T | SkipJsonSchema[None]``."""
    return Field(default=None, description=description, json_schema_extra=_drop_default)


class _Body(BaseModel):
    """A JSON body: documented fields only (a field the server adds without documenting it is a problem)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


# --- errors and health -----------------------------------------------------------------------------------------


class ErrorAnswer(_Body):
    """Every answer other than 200, except a refused manual action (409, an :class:`ActionAnswer`)."""

    error: str
    """What went wrong, short and stable: ``unauthorized``, ``unknown seller``, ``bad parameter``, ``not ready``..."""
    detail: str
    """Why, for a person."""


class Health(_Body):
    """The process runs."""

    status: Literal["ok"]


class ReadinessChecks(_Body):
    """Each condition of readiness."""

    registry_loaded: bool
    partitions_assigned: bool
    recovery_done: bool
    counters_complete: bool
    kafka_reachable: bool


class Ready(_Body):
    """Every readiness check passed (a failing one answers 503 with the failing checks' names)."""

    ready: Literal[True]
    checks: ReadinessChecks


# --- statistics ------------------------------------------------------------------------------------------------


def _identifier(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_")


def _counts(name: str, doc: str, keys: tuple[str, ...], value: Any = int, base: type[BaseModel] = _Body) -> Any:
    """A model with one field per key (keys need not be identifiers: ``1d`` is field ``f_1d`` aliased ``1d``)."""
    fields: dict[str, Any] = {"f_" + _identifier(key): (value, Field(alias=key)) for key in keys}
    return create_model(name, __base__=base, __doc__=doc, **fields)


class CoverageCount(_Body):
    """Of the orders whose window opened in the window's days (and that could be solicited), how many are sent."""

    eligible: int
    solicited: int


class CoverageWindow(CoverageCount):
    """:class:`CoverageCount` with its ratio."""

    ratio: float | None
    """``solicited / eligible`` (4 decimals); null when none became eligible."""


WINDOWS = tuple(f"{days}d" for days in COVERAGE_DAYS)
if TYPE_CHECKING:  # built at run time from the code's constants; to mypy, plain models
    MarketplaceFunnel = BaseModel
    SellerFunnel = BaseModel
    Coverage = BaseModel
    ShareCoverage = BaseModel
else:
    MarketplaceFunnel = _counts(
        "MarketplaceFunnel", "Orders by current state; ``received`` is every order known.", (*FUNNEL_STATES, "received")
    )
    SellerFunnel = _counts(
        "SellerFunnel",
        "Orders by current state; ``received`` is every order known; ``dead_lettered`` counts the seller's input "
        "records that went to the dead-letter topic (since the workers started).",
        (*FUNNEL_STATES, "received", "dead_lettered"),
    )
    Coverage = _counts(
        "Coverage", "Coverage over the last day, 7 and 30 days (business time).", WINDOWS, CoverageWindow
    )
    ShareCoverage = _counts("ShareCoverage", "Coverage counts of one worker (no ratio).", WINDOWS, CoverageCount)


class Rate(_Body):
    """Events in the last hour and day (in memory: since the workers started)."""

    last_hour: int = Field(alias="1h")
    last_day: int = Field(alias="1d")


class MarketplaceStatistics(_Body):
    """One seller's numbers in one marketplace."""

    funnel: MarketplaceFunnel
    coverage: Coverage
    closing_48h_unsent: int
    """Unsent orders whose window closes in the next 48 hours."""
    past_window_unsent: int
    """Unsent orders whose window has already closed (not yet expired by their timer)."""


class SellerStatistics(_Body):
    """One seller's statistics, summed across the workers of the group."""

    seller_id: str
    name: str | None
    """From the sellers registry; null for a seller that has orders but no registry entry."""
    group: str | None
    funnel: SellerFunnel
    coverage: Coverage
    sends: Rate
    """Creates Amazon accepted."""
    throttled: Rate
    """HTTP 429 answers."""
    closing_48h_unsent: int
    past_window_unsent: int
    marketplaces: dict[str, MarketplaceStatistics]
    """By marketplace id."""
    attention: list[AlertKind]
    """The kinds of the seller's open alerts."""
    complete: bool | SkipJsonSchema[None] = _absent(
        "Only in ``GET /sellers/{seller_id}/stats``: false while a worker could not be reached or a partition is "
        "still recovering."
    )


class Totals(_Body):
    """The group's totals over every seller."""

    funnel: SellerFunnel
    coverage: Coverage
    sends: Rate
    throttled: Rate
    closing_48h_unsent: int
    past_window_unsent: int


class NoTotals(_Body):
    """The totals of a group without any seller: ``{}``."""


class GroupStatistics(_Body):
    """Every seller's statistics, summed across the workers of the group."""

    as_of: datetime
    workers: int
    """How many workers' shares are summed (this one's included)."""
    complete: bool
    """False while a worker could not be reached or a partition is still recovering."""
    totals: Totals | NoTotals
    sellers: list[SellerStatistics]
    """By seller id; every seller of the registry appears (zeros when it has no orders)."""
    recent: list[StateChanged]
    """The newest order outcomes across the group, newest first."""


class AlertCounts(_Body):
    """What the alerts engine reads: unsent orders closing within its hours, unsent orders whose window opened at
    least its days ago, orders sent within its days."""

    closing: int
    stale: int
    sent: int


class MarketplaceShare(_Body):
    """One worker's counters of one seller in one marketplace."""

    funnel: MarketplaceFunnel
    coverage: ShareCoverage
    closing_48h_unsent: int
    past_window_unsent: int
    alert: AlertCounts


class SellerShare(_Body):
    """One worker's share of a seller's statistics; each part is absent when this worker has nothing of it."""

    marketplaces: dict[str, MarketplaceShare] | SkipJsonSchema[None] = _absent("Counters by marketplace id.")
    sends: Rate | SkipJsonSchema[None] = _absent("Creates Amazon accepted, from this worker.")
    throttled: Rate | SkipJsonSchema[None] = _absent("HTTP 429 answers to this worker.")
    dead_lettered: int | SkipJsonSchema[None] = _absent("Dead letters of this worker since it started.")


class WorkerShare(_Body):
    """One worker's share of the statistics (internal: the workers sum each other's)."""

    worker: str
    complete: bool
    """Whether this worker's counters cover every partition it owns."""
    sellers: dict[str, SellerShare]
    recent: list[StateChanged]


class ForecastDay(_Body):
    """Checks coming due on one day (overdue ones count for today)."""

    date: date
    due: int
    over_capacity: bool


class Forecast(_Body):
    """Orders coming due per day against the seller's quota."""

    seller_id: str
    capacity_per_day: int
    """Orders the seller's SP-API quota can carry in a business day."""
    complete: bool
    """False when a worker did not answer (its orders are missing from the counts)."""
    days: list[ForecastDay]


class Alerts(_Body):
    """The open alerts (the latest raise of each alert not resolved since)."""

    open: list[Alert]


# --- orders ----------------------------------------------------------------------------------------------------


class OrderSummary(_Body):
    """One line of an orders page."""

    order_key: str
    order_id: str
    marketplace_id: str
    state: OrderState
    window_end: IsoDateTime | None
    next_due: IsoDateTime | None
    last_reason: str


class OrdersPage(_Body):
    """A page of a seller's orders, by order key."""

    seller_id: str
    orders: list[OrderSummary]
    next: str | None
    """The last order key of a full page (pass it as ``after`` for the next page); null on the last page."""


class OrderWindow(_Body):
    """Amazon's window for a solicitation."""

    start: IsoDateTime | None
    end: IsoDateTime | None
    estimated: bool
    """Whether it is computed from estimates (no delivery date known yet)."""


class OrderLease(_Body):
    """The latest send command."""

    id: int
    expires_at: IsoDateTime | None


GROUPED = {"window_start", "window_end", "window_estimated", "lease_id", "lease_expires_at"}


def _order_view_model() -> Any:
    """The order as ``streams.web.queries.order_view`` shows it: the record's fields, window and lease grouped."""
    fields: dict[str, Any] = {"order_key": (str, ...), "partition": (int, ...)}
    for name, info in OrderRecord.model_fields.items():
        if name not in HIDDEN_FIELDS and name not in GROUPED:
            fields[name] = (info.annotation, info)
    fields |= {"window": (OrderWindow, ...), "lease": (OrderLease, ...)}
    return create_model(
        "OrderView",
        __config__=ConfigDict(extra="allow", json_schema_serialization_defaults_required=True),
        __doc__="One order's stored record, without buyer data (a record holds none). Fields a newer worker adds "
        "may appear.",
        **fields,
    )


OrderView = _order_view_model()


class ActionNote(_Body):
    """Why (recorded with the action)."""

    note: str = Field(default="", max_length=500)


ACTION_NAMES: dict[str, Any] = {"enum": sorted(ACTIONS)}


class ActionAnswer(_Body):
    """The outcome of a manual action, as the state machine previews it on the current record."""

    order_key: str
    action: str = Field(json_schema_extra=ACTION_NAMES)
    actor: str
    """The name of the caller's token."""
    accepted: bool
    state: OrderState
    """The state the action leads to (the current state when refused)."""
    reason: str


MODELS: tuple[type[BaseModel], ...] = (
    ErrorAnswer,
    Health,
    Ready,
    SellerStatistics,
    GroupStatistics,
    WorkerShare,
    Forecast,
    Alerts,
    OrdersPage,
    OrderView,
    ActionNote,
    ActionAnswer,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def components() -> dict[str, Any]:
    """Every model's JSON Schema, referencing each other under ``#/components/schemas``."""
    _keys, schemas = models_json_schema(
        [(model, "serialization") for model in MODELS], ref_template="#/components/schemas/{model}"
    )
    return dict(schemas["$defs"])


# --- operations ------------------------------------------------------------------------------------------------

WHY = {
    303: "Not signed in: redirect to the sign-in page.",
    400: "A parameter or the body is not valid.",
    401: "No valid bearer token.",
    404: "Not found.",
    409: "The order's state refuses the action (the answer says why).",
    500: "Unexpected error (see the worker's log).",
    503: "Not ready.",
}
PARAMETERS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    "after": {"type": "string", "description": "The ``next`` of the previous page."},
    "state": {"type": "string", "enum": list(FUNNEL_STATES), "description": "Only orders in this state."},
    "closing_within": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 24 * 90,
        "description": "Hours: only unsent orders whose window closes within them.",
    },
    "days": {"type": "integer", "minimum": 1, "maximum": 60, "default": 14},
    "group": {"type": "string", "description": "Only the sellers of this group."},
    "sort": {"type": "string", "description": "A column of the sellers' table; ``-`` in front for descending."},
}
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", dashboard.LOGIN_PATH})
"""Paths that need no token."""


@dataclass(frozen=True)
class Op:
    """One operation: what it answers per status, and what it takes."""

    path: str
    method: str
    tag: str
    summary: str
    ok: type[BaseModel] | str
    """The 200 body: a model (JSON), or a media type whose body is text."""
    errors: Mapping[int, str] = field(default_factory=dict)
    """Other statuses and why (empty: :data:`WHY`'s)."""
    query: tuple[str, ...] = ()
    body: dict[str, Any] | None = None
    description: str = ""
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def html(self) -> bool:
        return self.ok == HTML


def _statuses(*codes: int, **why: str) -> dict[int, str]:
    """``_statuses(401, 404, s404="unknown seller")``: the codes, each with its own reason or :data:`WHY`'s."""
    return {code: why.get(f"s{code}", WHY[code]) for code in codes}


ACTION_BODY = {"required": False, "content": {JSON: {"schema": _ref(ActionNote)}}}
FORWARDED_NOTE = (
    f"Asked by another worker (header ``{FORWARDED}``), a worker answers with its own share only: "
    "``{seller_id, days: {date: due}}``."
)
API_OPS: tuple[Op, ...] = (
    Op("/healthz", "get", "health", "Liveness", Health),
    Op("/readyz", "get", "health", "Readiness", Ready, _statuses(503, s503="Not ready: the failing checks.")),
    Op("/metrics", "get", "health", "Prometheus exposition", "text/plain", _statuses(404, s404="Metrics are off.")),
    Op("/stats", "get", "statistics", "Every seller's statistics, summed across workers", GroupStatistics),
    Op(
        "/internal/stats",
        "get",
        "internal",
        "This worker's share of the statistics (internal: workers only)",
        WorkerShare,
        description="Internal: the workers of a group ask each other with their shared token and sum the shares. "
        "Not for clients; the shape may change between versions.",
        extensions={"x-internal": True},
    ),
    Op("/alerts", "get", "alerts", "Open alerts", Alerts),
    Op(
        "/sellers/{seller_id}/stats",
        "get",
        "statistics",
        "One seller's statistics",
        SellerStatistics,
        _statuses(404, s404="Unknown seller."),
    ),
    Op(
        "/sellers/{seller_id}/orders",
        "get",
        "orders",
        "A page of the seller's orders",
        OrdersPage,
        _statuses(400),
        query=("state", "closing_within", "limit", "after"),
    ),
    Op(
        "/sellers/{seller_id}/forecast",
        "get",
        "statistics",
        "Orders coming due per day against the seller's quota",
        Forecast,
        _statuses(400),
        query=("days",),
        description=FORWARDED_NOTE,
    ),
    Op(
        "/orders/{seller_id}/{order_id}",
        "get",
        "orders",
        "One order",
        OrderView,
        _statuses(404, 503, s404="Unknown order.", s503="The order's partition is moving between workers."),
    ),
    Op(
        "/orders/{seller_id}/{order_id}/{action}",
        "post",
        "orders",
        "A manual action: skip, send now, recheck",
        ActionAnswer,
        _statuses(400, 404, 409, 503, s404="Unknown order or action.", s503="The partition is moving."),
        body=ACTION_BODY,
        description="Previewed on the current record, then applied by the orders agent (recorded in the history).",
    ),
)


def _form(required: tuple[str, ...], **fields: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": list(required)}
    return {"required": True, "content": {FORM: {"schema": schema}}}


UI = dashboard.UI_PREFIX
PAGE_OPS: tuple[Op, ...] = (
    Op(dashboard.LOGIN_PATH, "get", "dashboard", "The sign-in form", HTML),
    Op(
        dashboard.LOGIN_PATH,
        "post",
        "dashboard",
        "Sign in: keeps the token in an HTTP-only cookie",
        HTML,
        {303: "Signed in: the cookie is set; redirect to the overview.", 401: "The token is not valid (the form)."},
        body=_form(("token",), token={"type": "string"}),
    ),
    Op(dashboard.OVERVIEW_PATH, "get", "dashboard", "The overview", HTML, _statuses(303), query=("group", "sort")),
    Op(
        f"{UI}/sellers/{{seller_id}}",
        "get",
        "dashboard",
        "A seller's page",
        HTML,
        _statuses(303, 404, s404="Unknown seller."),
        query=("after",),
    ),
    Op(f"{UI}/orders/{{seller_id}}/{{order_id}}", "get", "dashboard", "An order's page", HTML, _statuses(303, 404)),
    Op(
        f"{UI}/orders/{{seller_id}}/{{order_id}}/{{action}}",
        "post",
        "dashboard",
        "A manual action from the order's page",
        HTML,
        _statuses(303, 400, 404, 409, 503, s409="Refused: the order's page with the reason."),
        body=_form((), note={"type": "string", "maxLength": 500}),
    ),
)
OPERATIONS = API_OPS + PAGE_OPS


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema}}


def _response(op: Op, status: int, why: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": why}
    if status == 303:
        answer["headers"] = {"Location": {"schema": {"type": "string"}}}
    elif status == 200:
        answer["content"] = (
            _content(op.ok, {"type": "string"}) if isinstance(op.ok, str) else _content(JSON, _ref(op.ok))
        )
    elif op.html and status != 500:
        answer["content"] = _content(HTML, {"type": "string"})
    else:
        answer["content"] = _content(JSON, _ref(ActionAnswer if status == 409 else ErrorAnswer))
    return answer


def _parameters(op: Op) -> list[dict[str, Any]]:
    found = []
    for name in re.findall(r"{(\w+)}", op.path):
        schema = {"type": "string", **ACTION_NAMES} if name == "action" else {"type": "string"}
        found.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name in op.query:
        schema = dict(PARAMETERS[name])
        description = schema.pop("description", None)
        param = {"name": name, "in": "query", "required": False, "schema": schema}
        found.append(param | ({"description": description} if description else {}))
    return found


def operation(op: Op) -> dict[str, Any]:
    """The OpenAPI operation object of ``op``."""
    statuses = {200: "OK" if op.method == "get" else "Done"}
    if op.path not in PUBLIC:
        statuses[401 if not op.html else 303] = WHY[401 if not op.html else 303]
    statuses |= {**op.errors, 500: WHY[500]}
    if op.path == dashboard.LOGIN_PATH and op.method == "post":
        statuses.pop(200)
    described: dict[str, Any] = {
        "operationId": f"{op.method}_{_identifier(op.path)}",
        "tags": [op.tag],
        "summary": op.summary,
        "parameters": _parameters(op),
        "responses": {str(code): _response(op, code, why) for code, why in sorted(statuses.items())},
        "security": [] if op.path in PUBLIC else [{"bearerAuth": []}, {"cookieAuth": []}],
        **op.extensions,
    }
    if op.description:
        described["description"] = op.description
    if op.body is not None:
        described["requestBody"] = op.body
    return described


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route :func:`streams.web.api.register_api` and
    :func:`streams.web.pages.register_dashboard` mount."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "solicit worker API",
            "version": API_VERSION,
            "description": "Every worker serves the same API; see docs/web-api.md. Errors are "
            '``{"error", "detail"}``; no answer holds a token or buyer data.',
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A token of SOLICIT_WEB__TOKENS."},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": COOKIE, "description": "The dashboard's."},
            },
        },
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
    }


def render() -> str:
    """``docs/openapi.json``'s text: sorted keys, indent 2, a trailing newline."""
    return json.dumps(openapi(), indent=2, sort_keys=True) + "\n"


# --- checking bodies -------------------------------------------------------------------------------------------


class UndocumentedResponse(LookupError):
    """The spec has no JSON body for this operation and status: document it (or ask about another one)."""


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The committed document (``docs/openapi.json``)."""
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def path_template(spec: Mapping[str, Any], path: str) -> str:
    """The documented path template a concrete path (query string allowed) matches: ``/orders/S/1/skip`` ->
    ``/orders/{seller_id}/{order_id}/{action}``; the one with the most literal segments wins."""
    segments = path.split("?", 1)[0].rstrip("/").split("/") or [""]
    best: tuple[int, str] | None = None
    for template in spec["paths"]:
        parts = template.rstrip("/").split("/")
        if len(parts) != len(segments):
            continue
        literal = [not (p.startswith("{") and p.endswith("}")) for p in parts]
        matches = all(not lit or p == s for p, s, lit in zip(parts, segments, literal, strict=True))
        if matches and (best is None or sum(literal) > best[0]):
            best = (sum(literal), template)
    if best is None:
        raise UndocumentedResponse(f"no documented path matches {path!r}")
    return best[1]


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def response_problems(spec: Mapping[str, Any], method: str, path_template: str, status: int, body: Any) -> list[str]:
    """What is wrong with ``body`` as the JSON answer ``status`` of ``method path_template``, one readable line each
    (``where: what``); empty when it matches. ``$ref`` s into ``#/components/schemas`` resolve against ``spec``.

    Raises :class:`UndocumentedResponse` when the spec documents no JSON body for that operation and status."""
    method = method.lower()
    try:
        content = spec["paths"][path_template][method]["responses"][str(status)]["content"]
    except KeyError:
        raise UndocumentedResponse(f"{method.upper()} {path_template} documents no {status} answer") from None
    if JSON not in content:
        raise UndocumentedResponse(f"{method.upper()} {path_template} {status} is not JSON ({', '.join(content)})")
    pointer = _pointer("", "paths", path_template, method, "responses", str(status), "content", JSON, "schema")
    validator = _validator(spec, {"$ref": f"{SPEC_URI}#{pointer}"})
    return sorted(_problem(error) for error in validator.iter_errors(body))


def _validator(spec: Mapping[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) of ``schema``, with ``spec`` registered as
    :data:`SPEC_URI`. jsonschema is a development dependency: imported here, so the rest works without it."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resource: Resource[Any] = Resource.from_contents(dict(spec), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    validator_cls = validator_for(schema, default=Draft202012Validator)
    return validator_cls(schema, registry=registry, format_checker=validator_cls.FORMAT_CHECKER)


def _problem(error: Any) -> str:
    """``where: what``; of an ``anyOf`` of objects, the problem of the branch that matched deepest (not the value)."""
    while error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) <= len(error.absolute_path):
            break
        error = deepest
    where = "/".join(str(part) for part in error.absolute_path) or "(body)"
    return f"{where}: {error.message}"


if __name__ == "__main__":  # pragma: no cover - `make docs`
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SPEC_PATH
    target.write_text(render(), encoding="utf-8")
    print(target)
