"""The worker's metrics: recorded, rendered in the exposition format, bounded labels, the SP-API client's and the
sender's observers, and the Grafana dashboard naming exactly the metrics that exist."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from connectors.clock import ManualClock
from connectors.crypto import TokenCipher, generate_key
from connectors.spapi import (
    AppCredentialsRejected,
    AuthorizationRevoked,
    CallObserved,
    ClientConfig,
    LwaFailure,
    SolicitationsClient,
)
from connectors.spapi.client import OPERATION_CREATE, OPERATION_GET
from statemachine import OrderChanged, SellerPolicy, SendCommand, SendResult, SendResultKind, SendStarted
from statemachine.errors import InvalidNotification
from statemachine.marketplaces import Region
from statemachine.parse import parse_notification
from streams.alerts import SellerProblem
from streams.deadletters import DeadLetter
from streams.metrics import DEAD_LETTER_REASONS, UNKNOWN, Metrics, reason_class
from streams.outcomes import SendAttempt
from streams.registry import SellerRecord
from streams.sender import Sender, SendObserver
from tests.support.factories import notification_dict
from tests.support.spapi_fakes import LWA_URL, ORDER, US, FakeAmazon, FakeSleep, actions, app, seller, spapi_error

K = SendResultKind
ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "docs" / "grafana" / "solicit.json"
CIPHER = TokenCipher(SecretStr(generate_key()))


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered exposition text: (sample name, labels) -> value."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def send_result(seller_id: str, kind: SendResultKind = K.SENT) -> SendResult:
    return SendResult(seller_id=seller_id, order_id=ORDER, lease_id=1, result=kind)


# --- recording and rendering -------------------------------------------------------------------------------------


def test_counters_are_recorded_and_rendered_in_the_exposition_format() -> None:
    metrics = Metrics()
    metrics.known_sellers({"SELLER1"}.__contains__)
    metrics.event_processed("order_changed")
    metrics.event_processed("order_changed")
    metrics.event_processed("timer_fired")
    metrics.dead_lettered("solicit.order-changes.v1", "body is empty")
    metrics.send_result(send_result("SELLER1"), None)
    metrics.observe_call(CallObserved(OPERATION_GET, "SELLER1", 429, 0.2, throttled=True))
    metrics.observe_call(CallObserved(OPERATION_GET, "SELLER1", 200, 0.3, throttled=False))
    metrics.observe_call(CallObserved(OPERATION_CREATE, "SELLER1", None, 12.0, throttled=False))
    metrics.observe_lwa_failure(LwaFailure("SELLER1", "invalid_grant"))
    metrics.observe_lwa_failure(LwaFailure(None, "invalid_client"))

    found = samples(metrics)
    assert found[("solicit_events_processed_total", frozenset({("kind", "order_changed")}))] == 2
    assert found[("solicit_events_processed_total", frozenset({("kind", "timer_fired")}))] == 1
    dead = frozenset({("source", "solicit.order-changes.v1"), ("reason", "invalid_json")})
    assert found[("solicit_dead_letters_total", dead)] == 1
    assert found[("solicit_sends_total", frozenset({("seller_id", "SELLER1"), ("result", "sent")}))] == 1
    get_429 = frozenset({("operation", OPERATION_GET), ("status", "429")})
    assert found[("solicit_spapi_request_seconds_count", get_429)] == 1
    assert found[("solicit_spapi_request_seconds_bucket", get_429 | {("le", "0.25")})] == 1
    assert found[("solicit_spapi_request_seconds_bucket", get_429 | {("le", "0.1")})] == 0
    no_answer = frozenset({("operation", OPERATION_CREATE), ("status", "none")})
    assert found[("solicit_spapi_request_seconds_sum", no_answer)] == 12.0
    throttled = frozenset({("seller_id", "SELLER1"), ("operation", OPERATION_GET)})
    assert found[("solicit_spapi_throttled_total", throttled)] == 1
    assert found[("solicit_lwa_failures_total", frozenset({("seller_id", "SELLER1"), ("reason", "invalid_grant")}))]
    assert found[("solicit_lwa_failures_total", frozenset({("seller_id", "app"), ("reason", "invalid_client")}))]


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.event_processed("manual")
    assert value(first, "solicit_events_processed_total", kind="manual") == 1
    assert value(second, "solicit_events_processed_total", kind="manual") is None


def test_sellers_not_in_the_registry_become_unknown() -> None:
    metrics = Metrics()
    metrics.send_result(send_result("SELLER1"), None)  # no registry given yet: nobody is known
    registry = {"SELLER1"}
    metrics.known_sellers(registry.__contains__)
    metrics.send_result(send_result("SELLER1"), None)
    for n in range(50):
        metrics.send_result(send_result(f"FAKE{n}"), None)
        metrics.observe_call(CallObserved(OPERATION_GET, f"FAKE{n}", 429, 0.1, throttled=True))
    metrics.observe_lwa_failure(LwaFailure("FAKE1", "invalid_grant"))

    assert value(metrics, "solicit_sends_total", seller_id="SELLER1", result="sent") == 1
    assert value(metrics, "solicit_sends_total", seller_id=UNKNOWN, result="sent") == 51
    assert value(metrics, "solicit_spapi_throttled_total", seller_id=UNKNOWN, operation=OPERATION_GET) == 50
    assert value(metrics, "solicit_lwa_failures_total", seller_id=UNKNOWN, reason="invalid_grant") == 1
    labels = {dict(labels).get("seller_id") for _name, labels in samples(metrics)}
    assert labels <= {None, "SELLER1", UNKNOWN}


def test_unknown_kinds_and_lwa_reasons_are_not_labels() -> None:
    metrics = Metrics()
    metrics.event_processed("Atzr|not-a-kind")
    metrics.observe_lwa_failure(LwaFailure(None, "free text from somewhere"))
    assert value(metrics, "solicit_events_processed_total", kind=UNKNOWN) == 1
    assert value(metrics, "solicit_lwa_failures_total", seller_id="app", reason="other") == 1
    assert b"Atzr" not in metrics.render()[0]


# --- reason classes -----------------------------------------------------------------------------------------------


def rejection(body: bytes, max_bytes: int = 1024 * 1024) -> str:
    """The reason the bridge and the orders agent give for ``body`` (the same parse and plausibility checks)."""
    with pytest.raises(InvalidNotification) as caught:
        OrderChanged.from_notification(parse_notification(body, max_bytes=max_bytes))
    return caught.value.reason


def notification(**changes: object) -> bytes:
    return json.dumps(notification_dict() | changes).encode()


def dated(edd: datetime, ldd: datetime) -> bytes:
    """A notification with these delivery dates."""
    return json.dumps(notification_dict(edd=edd, ldd=ldd)).encode()


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (rejection(b""), "invalid_json"),
        (rejection(b"{not json"), "invalid_json"),
        (rejection(b"\xff\xfe"), "invalid_json"),
        (rejection(b"[1, 2]"), "invalid_json"),
        (rejection(json.dumps(json.dumps(json.dumps({}))).encode()), "invalid_json"),
        (rejection(b'"[1]"'), "invalid_json"),
        (rejection(b"x" * 100, max_bytes=10), "too_large"),
        (rejection(b"{}"), "invalid_notification"),
        (rejection(notification(NotificationType="X")), "invalid_notification"),
        (
            rejection(json.dumps(notification_dict(edd=datetime(2300, 1, 1, tzinfo=UTC))).encode()),
            "invalid_notification",
        ),
        (
            rejection(
                json.dumps(
                    notification_dict(edd=datetime(2026, 3, 9, tzinfo=UTC), ldd=datetime(2026, 3, 2, tzinfo=UTC))
                ).encode()
            ),
            "invalid_notification",
        ),
        (rejection(dated(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))), "invalid_notification"),
        # streams/orders.py and streams/sender.py write these in their own words:
        ("not an order event: seller_id: required field is missing", "not_an_order_event"),
        ("record key b'x' is not the order key 'S/O'", "wrong_key"),
        ("cannot be applied: RecordTooLarge: the order record would be 300000 bytes, more than 100", "too_large"),
        ("cannot be applied: OverflowError: date value out of range", "cannot_be_applied"),
        ("something nobody wrote yet", "other"),
    ],
)
def test_dead_letter_reasons_fall_into_their_class(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


@given(st.text(max_size=300))
def test_reason_classes_are_a_fixed_set(text: str) -> None:
    assert reason_class(text) in DEAD_LETTER_REASONS


def test_dead_letters_are_counted_by_class_not_by_text() -> None:
    metrics = Metrics()
    for n in range(20):
        metrics.dead_lettered("sqs", f"Payload.OrderChangeNotification.SellerId: bad value {n}")
    assert value(metrics, "solicit_dead_letters_total", source="sqs", reason="invalid_notification") == 20
    assert len([name for name, _ in samples(metrics) if name == "solicit_dead_letters_total"]) == 1


# --- scrape hook --------------------------------------------------------------------------------------------------


def test_the_scrape_hook_fills_the_gauges_of_the_moment() -> None:
    metrics = Metrics()
    owned = {3: (5, 42.0)}

    def hook(m: Metrics) -> None:
        for partition, (backlog, age) in owned.items():
            m.set_due_backlog(partition, backlog)
            m.set_due_oldest_age(partition, age)
            m.set_consumer_lag("solicit.order-events.v1", partition, 7)

    metrics.set_scrape_hook(hook)
    assert value(metrics, "solicit_due_backlog", partition="3") == 5
    assert value(metrics, "solicit_due_oldest_age_seconds", partition="3") == 42.0
    assert value(metrics, "solicit_consumer_lag", topic="solicit.order-events.v1", partition="3") == 7

    owned.clear()
    owned[4] = (1, 0.0)  # partition 3 moved to another worker
    found = samples(metrics)
    assert ("solicit_due_backlog", frozenset({("partition", "3")})) not in found
    assert found[("solicit_due_backlog", frozenset({("partition", "4")}))] == 1


def test_a_failing_scrape_hook_still_answers_the_scrape() -> None:
    metrics = Metrics()
    metrics.event_processed("rerouted")

    def hook(m: Metrics) -> None:
        m.set_due_backlog(0, 2)
        raise RuntimeError("index closed")

    metrics.set_scrape_hook(hook)
    assert value(metrics, "solicit_events_processed_total", kind="rerouted") == 1
    assert value(metrics, "solicit_due_backlog", partition="0") == 2


# --- the SP-API client's observer -------------------------------------------------------------------------------


def observed_client(
    amazon: FakeAmazon, observer: Callable[[CallObserved], None], lwa_observer: Callable[[LwaFailure], None]
) -> tuple[SolicitationsClient, ManualClock]:
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    client = SolicitationsClient(
        app=app(),
        clock=clock,
        lwa_endpoint=LWA_URL,
        config=ClientConfig(backoff_base=0.5, backoff_cap=4.0, max_attempts=3),
        transport=httpx.MockTransport(amazon.handler),
        sleep=FakeSleep(clock),
        observer=observer,
        lwa_observer=lwa_observer,
    )
    return client, clock


async def test_the_client_reports_every_http_attempt() -> None:
    calls: list[CallObserved] = []
    metrics = Metrics()
    metrics.known_sellers({"SELLER1"}.__contains__)
    holder: list[ManualClock] = []

    def slow_answer(request: httpx.Request) -> httpx.Response:
        holder[0].advance(0.7)  # Amazon takes 0.7 s to answer
        return actions("productReviewAndSellerFeedback")

    def observe(call: CallObserved) -> None:
        calls.append(call)
        metrics.observe_call(call)

    amazon = FakeAmazon(spapi_error(429, "QuotaExceeded", "You exceeded your quota"), slow_answer)
    client, clock = observed_client(amazon, observe, lambda _f: None)
    holder.append(clock)
    async with client:
        result = await client.get_solicitation_actions(seller(), ORDER, US)

    assert result.offered
    assert calls == [
        CallObserved(OPERATION_GET, "SELLER1", 429, 0.0, throttled=True),
        CallObserved(OPERATION_GET, "SELLER1", 200, pytest.approx(0.7), throttled=False),  # type: ignore[arg-type]
    ]
    assert value(metrics, "solicit_spapi_throttled_total", seller_id="SELLER1", operation=OPERATION_GET) == 1
    ok = {"operation": OPERATION_GET, "status": "200"}
    assert value(metrics, "solicit_spapi_request_seconds_bucket", **ok, le="0.5") == 0
    assert value(metrics, "solicit_spapi_request_seconds_bucket", **ok, le="1.0") == 1


async def test_a_failing_observer_does_not_change_the_call() -> None:
    def broken(_event: object) -> None:
        raise RuntimeError("observer bug")

    client, _ = observed_client(FakeAmazon(actions("productReviewAndSellerFeedback")), broken, broken)
    async with client:
        result = await client.get_solicitation_actions(seller(), ORDER, US)
    assert result.offered


@pytest.mark.parametrize(
    ("lwa_answer", "reason"),
    [
        (httpx.Response(400, json={"error": "invalid_grant", "error_description": "revoked"}), "invalid_grant"),
        (httpx.Response(401, json={"error": "invalid_client"}), "invalid_client"),
    ],
)
async def test_the_client_reports_lwa_failures_with_a_bounded_reason(lwa_answer: httpx.Response, reason: str) -> None:
    failures: list[LwaFailure] = []
    client, _ = observed_client(FakeAmazon(lwa=[lwa_answer]), lambda _c: None, failures.append)
    async with client:
        with pytest.raises((AuthorizationRevoked, AppCredentialsRejected)):
            await client.get_solicitation_actions(seller(), ORDER, US)
    assert failures == [LwaFailure("SELLER1", reason)]


async def test_lwa_server_errors_are_reported_once_per_exchange() -> None:
    failures: list[LwaFailure] = []
    amazon = FakeAmazon(actions(), lwa=[httpx.Response(503), httpx.ConnectError("down")])
    client, _ = observed_client(amazon, lambda _c: None, failures.append)
    async with client:
        await client.get_solicitation_actions(seller(), ORDER, US)
    assert failures == [LwaFailure("SELLER1", "server_error"), LwaFailure("SELLER1", "unreachable")]


# --- the sender's observers ---------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.results: list[SendResult] = []
        self.dead: list[DeadLetter] = []
        self.published = asyncio.Event()

    async def started(self, started: SendStarted) -> None:
        pass

    async def result(self, result: SendResult) -> None:
        self.results.append(result)
        self.published.set()

    async def attempt(self, attempt: SendAttempt) -> None:
        pass

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.dead.append(letter)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[SendResult, SellerProblem | None]] = []

    def send_result(self, result: SendResult, problem: SellerProblem | None) -> None:
        self.seen.append((result, problem))


class Broken:
    def send_result(self, result: SendResult, problem: SellerProblem | None) -> None:
        raise RuntimeError("observer bug")


def registry() -> dict[str, SellerRecord]:
    credentials = seller()
    record = SellerRecord(
        seller_id=credentials.seller_id,
        name="Seller 1",
        region=Region.NA,
        marketplace_ids=(US,),
        refresh_token_encrypted=CIPHER.encrypt(credentials.refresh_token),
        policy=SellerPolicy(),
        updated_at=datetime.now(UTC),
    )
    return {record.seller_id: record}


def command(clock: ManualClock) -> SendCommand:
    now = clock.now()
    return SendCommand(
        seller_id="SELLER1",
        order_id=ORDER,
        marketplace_id=US,
        lease_id=1,
        issued_at=now,
        lease_expires_at=now + timedelta(minutes=30),
        deadline=now + timedelta(days=20),
    )


async def send_one(amazon: FakeAmazon, *observers: SendObserver) -> tuple[Sink, Sender]:
    sink = Sink()
    client, clock = observed_client(amazon, lambda _c: None, lambda _f: None)
    sellers = registry()
    sender = Sender(
        sellers=sellers,
        client_for=lambda name: client,
        cipher=CIPHER,
        sink=sink,
        clock=clock,
        observers=observers,
    )
    sender.submit(command(clock), partition=0, offset=1)
    async with asyncio.timeout(10):
        await sink.published.wait()
    await sender.close()
    await client.aclose()
    return sink, sender


async def test_the_observers_see_a_revoked_authorization_as_a_problem() -> None:
    recorder, metrics = Recorder(), Metrics()
    metrics.known_sellers({"SELLER1"}.__contains__)
    revoked = httpx.Response(400, json={"error": "invalid_grant", "error_description": "revoked"})
    sink, _ = await send_one(FakeAmazon(lwa=[revoked]), Broken(), recorder, metrics)

    (published,) = sink.results
    assert published.result is K.DEFERRED
    assert recorder.seen == [(published, SellerProblem.AUTHORIZATION_REVOKED)]
    assert value(metrics, "solicit_sends_total", seller_id="SELLER1", result="deferred") == 1


async def test_an_ordinary_result_has_no_problem() -> None:
    recorder = Recorder()
    sink, _ = await send_one(FakeAmazon(actions()), recorder)
    (published,) = sink.results
    assert recorder.seen == [(published, None)]
    assert published.result is K.NOT_YET_AVAILABLE


async def test_the_senders_dead_letters_fall_into_their_class() -> None:
    rejected = spapi_error(400, "InvalidInput", "bad order id")
    sink, sender = await send_one(FakeAmazon(rejected))
    await sender.receive(partition=0, offset=2, value=b"{}")
    assert [reason_class(letter.reason) for letter in sink.dead] == ["spapi_rejected", "not_a_send_command"]


# --- the dashboard --------------------------------------------------------------------------------------------------

_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exposed_names(metrics: Metrics) -> dict[str, str]:
    """Every series name the registry can expose -> its family name."""
    return {
        family.name + suffix: family.name for family in metrics.registry.collect() for suffix in _SUFFIXES[family.type]
    }


def dashboard_exprs() -> list[str]:
    """The query of every target of every panel, rows' nested panels included."""

    def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for panel in items:
            out.append(panel)
            out.extend(panels(panel.get("panels", [])))
        return out

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [str(target["expr"]) for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])]


def test_the_dashboard_names_only_metrics_that_exist_and_shows_every_one() -> None:
    exposed = exposed_names(Metrics())
    referenced = {name for expr in dashboard_exprs() for name in re.findall(r"\bsolicit_[a-z_]+", expr)}
    assert referenced, "no panel queries a solicit_ metric"
    assert sorted(referenced - set(exposed)) == []
    assert sorted(set(exposed.values()) - {exposed[name] for name in referenced}) == []


def test_the_dashboard_uses_the_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] == 39
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("DS_PROMETHEUS", "prometheus")
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
