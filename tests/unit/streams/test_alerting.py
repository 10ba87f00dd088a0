"""The alerts engine: each condition is raised once, not again while open, resolved once, and may be raised again
after; rates resolve below half their threshold; a seller is judged only by its owner; a restart never raises twice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from statemachine.events import SendResult, SendResultKind
from streams.alerting import (
    MAX_RESULTS_PER_SELLER,
    AlertEngine,
    AlertSettings,
    SellerStats,
    SignalCollector,
    latest_alerts,
)
from streams.alerts import Alert, AlertKind, SellerProblem
from streams.settings import Settings

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
SELLER = "A1SELLER"
TOKEN = "Atzr|IwEB-never-in-an-alert"  # a fake token that must not leak


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings() -> AlertSettings:
    return AlertSettings()


@pytest.fixture
def signals(settings: AlertSettings, clock: Clock) -> SignalCollector:
    return SignalCollector(settings, clock)


@pytest.fixture
def engine(settings: AlertSettings) -> AlertEngine:
    return AlertEngine(settings, worker_id="w1")


def result(kind: SendResultKind, seller_id: str = SELLER, order: int = 1) -> SendResult:
    return SendResult(seller_id=seller_id, order_id=f"111-{order:07d}-0000000", lease_id=1, result=kind, reason=TOKEN)


def everyone(_seller_id: str) -> bool:
    return True


def run(engine: AlertEngine, signals: SignalCollector, clock: Clock, *stats: SellerStats) -> list[tuple[str, str]]:
    """Evaluate now; the (status, alert_id) of each event."""
    events = engine.evaluate(clock.now, signals, stats, everyone)
    return [(event.status, event.alert_id) for event in events]


def report(signals: SignalCollector, count: int, failed: int, seller_id: str = SELLER) -> None:
    for index in range(count):
        kind = SendResultKind.RETRYABLE_FAILURE if index < failed else SendResultKind.SENT
        signals.send_result(result(kind, seller_id, index), None)


# --- seller problems --------------------------------------------------------------------------------------------------


def test_a_revoked_authorization_is_raised_once_and_resolved_once(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    revoked = "authorization_revoked:A1SELLER"
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    assert run(engine, signals, clock) == [("raised", revoked)]

    for order in range(5):  # every later deferral reports it again: still open, not raised again
        clock.advance(seconds=30)
        signals.send_result(result(SendResultKind.DEFERRED, order=order), SellerProblem.AUTHORIZATION_REVOKED)
        assert run(engine, signals, clock) == []
    assert [alert.alert_id for alert in engine.open_alerts()] == [revoked]

    signals.send_result(result(SendResultKind.SENT), None)
    assert run(engine, signals, clock) == [("resolved", revoked)]
    assert run(engine, signals, clock) == []
    assert engine.open_alerts() == []

    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    assert run(engine, signals, clock) == [("raised", revoked)]  # resolved, so it may be raised again


def test_a_result_without_a_call_does_not_resolve_a_problem(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.ACCESS_DENIED)
    assert run(engine, signals, clock) == [("raised", "access_denied:A1SELLER")]

    signals.send_result(result(SendResultKind.DEFERRED), None)  # paused: nothing was tried
    signals.send_result(result(SendResultKind.NOT_ENABLED), None)
    signals.send_result(result(SendResultKind.RETRYABLE_FAILURE), None)  # may be an LWA outage
    assert run(engine, signals, clock) == []

    signals.send_result(result(SendResultKind.NOT_YET_AVAILABLE), None)  # Amazon answered for the seller
    assert run(engine, signals, clock) == [("resolved", "access_denied:A1SELLER")]


def test_another_problem_resolves_the_first_and_raises_its_own(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    run(engine, signals, clock)

    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.ACCESS_DENIED)

    assert sorted(run(engine, signals, clock)) == [
        ("raised", "access_denied:A1SELLER"),
        ("resolved", "authorization_revoked:A1SELLER"),
    ]


@pytest.mark.parametrize(
    ("problem", "says"),
    [
        (SellerProblem.NO_CREDENTIALS, "no LWA application"),
        (SellerProblem.NO_SECRET_KEY, "SOLICIT_SECRET_KEY is not set"),
        (SellerProblem.UNDECRYPTABLE_TOKEN, "decrypts the seller's refresh token"),
        (SellerProblem.APP_CREDENTIALS_REJECTED, "client id or secret"),
    ],
)
def test_configuration_problems_raise_one_configuration_alert(
    engine: AlertEngine, signals: SignalCollector, clock: Clock, problem: SellerProblem, says: str
) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), problem)

    (alert,) = engine.evaluate(clock.now, signals, [], everyone)

    assert (alert.kind, alert.alert_id, alert.seller_id) == (AlertKind.CONFIGURATION, "configuration:A1SELLER", SELLER)
    assert alert.message.startswith("the service cannot act for seller A1SELLER: ")
    assert says in alert.message
    assert alert.details == {"problem": problem.value}
    assert TOKEN not in alert.model_dump_json()


def test_a_new_token_resolves_the_problem_until_a_call_fails_again(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    run(engine, signals, clock)

    engine.seller_changed(SELLER)

    assert run(engine, signals, clock) == [("resolved", "authorization_revoked:A1SELLER")]
    assert run(engine, signals, clock) == []  # the old problem is forgotten, not raised again
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    assert run(engine, signals, clock) == [("raised", "authorization_revoked:A1SELLER")]


def test_a_removed_seller_has_every_alert_resolved(engine: AlertEngine, signals: SignalCollector, clock: Clock) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.ACCESS_DENIED)
    report(signals, 20, 20)
    stats = SellerStats(SELLER, closing_unsent=3, eligible_recent=3, sent_recent=0)
    assert len(run(engine, signals, clock, stats)) == 4

    engine.seller_removed(SELLER)

    assert sorted(run(engine, signals, clock)) == [
        ("resolved", "access_denied:A1SELLER"),
        ("resolved", "deadline_near:A1SELLER"),
        ("resolved", "error_rate:A1SELLER"),
        ("resolved", "no_sends:A1SELLER"),
    ]
    assert run(engine, signals, clock) == []
    assert len(signals) == 0


# --- rates ------------------------------------------------------------------------------------------------------------


def test_error_rate_needs_enough_calls(engine: AlertEngine, signals: SignalCollector, clock: Clock) -> None:
    report(signals, 19, 19)
    assert run(engine, signals, clock) == []

    report(signals, 1, 1)
    assert run(engine, signals, clock) == [("raised", "error_rate:A1SELLER")]


def test_error_rate_has_hysteresis(
    engine: AlertEngine, signals: SignalCollector, clock: Clock, settings: AlertSettings
) -> None:
    report(signals, 20, 6)  # 30 % > 25 %
    (raised,) = engine.evaluate(clock.now, signals, [], everyone)
    assert raised.details["failed"] == 6 and raised.details["calls"] == 20

    report(signals, 10, 0)  # 6 of 30: 20 %, under the threshold but not under half of it
    assert run(engine, signals, clock) == []
    report(signals, 10, 0)  # 6 of 40: 15 %
    assert run(engine, signals, clock) == []
    report(signals, 9, 0)  # 6 of 49: 12.2 % < 12.5 %
    assert run(engine, signals, clock) == [("resolved", "error_rate:A1SELLER")]

    report(signals, 11, 11)  # 17 of 60: 28 %
    assert run(engine, signals, clock) == [("raised", "error_rate:A1SELLER")]


def test_deferrals_for_a_problem_count_as_failures(engine: AlertEngine, signals: SignalCollector, clock: Clock) -> None:
    for order in range(20):
        signals.send_result(result(SendResultKind.DEFERRED, order=order), SellerProblem.NO_CREDENTIALS)
    for order in range(100):
        signals.send_result(result(SendResultKind.DEFERRED, order=order), None)  # paused: not attempts

    assert sorted(run(engine, signals, clock)) == [
        ("raised", "configuration:A1SELLER"),
        ("raised", "error_rate:A1SELLER"),
    ]


def test_error_rate_resolves_when_too_few_calls_remain_in_the_window(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    report(signals, 20, 20)
    assert run(engine, signals, clock) == [("raised", "error_rate:A1SELLER")]

    clock.advance(minutes=10)
    report(signals, 5, 5)
    assert run(engine, signals, clock) == []
    clock.advance(minutes=6)  # the first 20 left the window; 5 remain

    assert run(engine, signals, clock) == [("resolved", "error_rate:A1SELLER")]


def test_after_a_restart_an_error_rate_waits_a_whole_window_before_too_few_calls_resolve_it(
    settings: AlertSettings, signals: SignalCollector, clock: Clock
) -> None:
    open_rate = Alert(
        alert_id="error_rate:A1SELLER",
        kind=AlertKind.ERROR_RATE,
        status="raised",
        seller_id=SELLER,
        subject=SELLER,
        message="raised before the restart",
        at=START - timedelta(minutes=1),
    )
    restarted = AlertEngine(settings, "w1")
    restarted.restore([open_rate])

    assert run(restarted, signals, clock) == []  # no results yet is not "the rate went down"
    clock.advance(minutes=14)
    assert run(restarted, signals, clock) == []
    clock.advance(minutes=1)
    assert run(restarted, signals, clock) == [("resolved", "error_rate:A1SELLER")]


def test_dead_letters_are_about_the_worker_and_have_hysteresis(settings: AlertSettings, clock: Clock) -> None:
    signals = SignalCollector(settings, clock)
    engine = AlertEngine(settings, worker_id="worker-7")
    for _ in range(50):  # 10/min over 5 min: not above the threshold
        signals.dead_lettered()
    assert run(engine, signals, clock) == []

    signals.dead_lettered()
    (alert,) = engine.evaluate(clock.now, signals, [], everyone)
    assert (alert.alert_id, alert.subject, alert.seller_id) == ("dead_letters:worker-7", "worker-7", None)

    clock.advance(minutes=5, seconds=1)
    for _ in range(30):  # 6/min: above half the threshold
        signals.dead_lettered()
    assert run(engine, signals, clock) == []
    clock.advance(minutes=5, seconds=1)
    for _ in range(24):  # 4.8/min
        signals.dead_lettered()
    assert run(engine, signals, clock) == [("resolved", "dead_letters:worker-7")]


def test_dead_letters_of_another_worker_are_not_this_ones(settings: AlertSettings, clock: Clock) -> None:
    busy, quiet = SignalCollector(settings, clock), SignalCollector(settings, clock)
    for _ in range(100):
        busy.dead_lettered(clock.now - timedelta(minutes=1))

    assert run(AlertEngine(settings, "w1"), busy, clock) == [("raised", "dead_letters:w1")]
    assert run(AlertEngine(settings, "w2"), quiet, clock) == []


# --- statistics -------------------------------------------------------------------------------------------------------


def test_deadline_near_is_raised_from_the_minimum_and_resolved_at_none(signals: SignalCollector, clock: Clock) -> None:
    engine = AlertEngine(AlertSettings(deadline_min_orders=3), "w1")

    def closing(count: int) -> list[tuple[str, str]]:
        return run(engine, signals, clock, SellerStats(SELLER, closing_unsent=count, eligible_recent=0, sent_recent=0))

    assert closing(2) == []
    assert closing(3) == [("raised", "deadline_near:A1SELLER")]
    assert closing(1) == []  # fewer, but some are still unsent
    assert closing(0) == [("resolved", "deadline_near:A1SELLER")]
    assert closing(0) == []


def test_no_sends_is_resolved_at_the_next_send(engine: AlertEngine, signals: SignalCollector, clock: Clock) -> None:
    def counts(eligible: int, sent: int) -> list[tuple[str, str]]:
        return run(
            engine, signals, clock, SellerStats(SELLER, closing_unsent=0, eligible_recent=eligible, sent_recent=sent)
        )

    assert counts(0, 0) == []
    assert counts(4, 0) == [("raised", "no_sends:A1SELLER")]
    assert counts(0, 0) == []  # nothing sent yet: still open
    assert counts(4, 1) == [("resolved", "no_sends:A1SELLER")]


def test_a_seller_missing_from_the_stats_keeps_its_stats_alerts(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    run(engine, signals, clock, SellerStats(SELLER, closing_unsent=2, eligible_recent=0, sent_recent=0))

    assert run(engine, signals, clock) == []
    assert [alert.kind for alert in engine.open_alerts()] == [AlertKind.DEADLINE_NEAR]


# --- ownership, restarts ----------------------------------------------------------------------------------------------


def test_only_the_owner_judges_a_seller(settings: AlertSettings, signals: SignalCollector, clock: Clock) -> None:
    engine = AlertEngine(settings, "w1")
    signals.send_result(result(SendResultKind.DEFERRED, "A1MINE"), SellerProblem.ACCESS_DENIED)
    signals.send_result(result(SendResultKind.DEFERRED, "A2THEIRS"), SellerProblem.ACCESS_DENIED)
    stats = [SellerStats(seller, 5, 5, 0) for seller in ("A1MINE", "A2THEIRS")]

    events = engine.evaluate(clock.now, signals, stats, lambda seller_id: seller_id == "A1MINE")

    assert {event.seller_id for event in events} == {"A1MINE"}
    assert len(events) == 3

    theirs = Alert(
        alert_id="deadline_near:A2THEIRS",
        kind=AlertKind.DEADLINE_NEAR,
        status="raised",
        seller_id="A2THEIRS",
        subject="A2THEIRS",
        message="raised by w2",
        at=START,
    )
    engine.observe(theirs)
    later = [SellerStats("A2THEIRS", 0, 0, 0)]
    assert engine.evaluate(clock.now, signals, later, lambda seller_id: seller_id == "A1MINE") == []
    assert theirs in engine.open_alerts()  # another worker's to resolve


def test_a_change_of_a_seller_owned_elsewhere_is_left_to_its_owner(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.ACCESS_DENIED)
    engine.seller_changed(SELLER)
    assert engine.evaluate(clock.now, signals, [], lambda _seller_id: False) == []

    assert run(engine, signals, clock) == [("raised", "access_denied:A1SELLER")]  # the seller moved here later
    assert run(engine, signals, clock) == []


def test_a_restart_does_not_raise_an_open_alert_again(
    settings: AlertSettings, signals: SignalCollector, clock: Clock
) -> None:
    first = AlertEngine(settings, "w1")
    stats = SellerStats(SELLER, closing_unsent=2, eligible_recent=2, sent_recent=0)
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    raised = first.evaluate(clock.now, signals, [stats], everyone)
    assert len(raised) == 3
    on_topic = [alert.model_dump_json().encode() for alert in raised] + [b"not json", b'{"type": "alert"}']

    restarted = AlertEngine(settings, "w1")
    restarted.restore(latest_alerts(on_topic).values())
    clock.advance(minutes=1)
    fresh = SignalCollector(settings, clock)
    fresh.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)

    assert restarted.evaluate(clock.now, fresh, [stats], everyone) == []
    assert restarted.open_alerts() == sorted(raised, key=lambda alert: alert.alert_id)
    done = SellerStats(SELLER, closing_unsent=0, eligible_recent=2, sent_recent=1)
    assert sorted(run(restarted, fresh, clock, done)) == [
        ("resolved", "deadline_near:A1SELLER"),
        ("resolved", "no_sends:A1SELLER"),
    ]


def test_the_echo_of_an_old_raise_does_not_reopen_a_resolved_alert(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.ACCESS_DENIED)
    (raised,) = engine.evaluate(clock.now, signals, [], everyone)
    clock.advance(seconds=30)
    signals.send_result(result(SendResultKind.SENT), None)
    (resolved,) = engine.evaluate(clock.now, signals, [], everyone)

    engine.observe(raised)  # read back from the topic after the resolve was decided
    assert engine.open_alerts() == []
    assert run(engine, signals, clock) == []
    engine.observe(resolved)
    assert engine.open_alerts() == []


def test_latest_alerts_keeps_the_last_event_of_each_id(engine: AlertEngine, signals: SignalCollector) -> None:
    def event(status: str, minute: int) -> bytes:
        return (
            f'{{"alert_id": "no_sends:S", "kind": "no_sends", "status": "{status}", "subject": "S", "seller_id": "S", '
            f'"message": "m", "at": "2026-03-01T12:{minute:02d}:00Z"}}'
        ).encode()

    latest = latest_alerts([event("raised", 0), b"\xff", event("resolved", 1), event("raised", 2)])

    assert list(latest) == ["no_sends:S"]
    assert (latest["no_sends:S"].status, latest["no_sends:S"].at.minute) == ("raised", 2)


# --- memory, logs, settings -------------------------------------------------------------------------------------------


def test_memory_follows_the_sellers_with_recent_results_or_a_problem(
    engine: AlertEngine, signals: SignalCollector, clock: Clock
) -> None:
    for index in range(1000):
        signals.send_result(result(SendResultKind.SENT, seller_id=f"A{index}"), None)
    signals.send_result(result(SendResultKind.DEFERRED, seller_id="A1STUCK"), SellerProblem.ACCESS_DENIED)
    for order in range(MAX_RESULTS_PER_SELLER + 500):
        signals.send_result(result(SendResultKind.SENT, seller_id="A1BUSY", order=order % 1000), None)
    assert len(signals) == 1002
    assert signals.calls("A1BUSY", clock.now).total == MAX_RESULTS_PER_SELLER

    clock.advance(minutes=16)
    run(engine, signals, clock)

    assert signals.sellers() == ["A1STUCK"]


def test_each_raise_and_resolve_is_logged_once_without_a_token(
    engine: AlertEngine, signals: SignalCollector, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.alerting")
    signals.send_result(result(SendResultKind.DEFERRED), SellerProblem.AUTHORIZATION_REVOKED)
    run(engine, signals, clock)
    run(engine, signals, clock)
    signals.send_result(result(SendResultKind.SENT), None)
    run(engine, signals, clock)

    lines = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert all("authorization_revoked:A1SELLER" in line and "seller A1SELLER" in line for _, line in lines)
    assert lines[0][1].startswith("alert raised: ")
    assert lines[1][1].startswith("alert resolved: ")
    assert TOKEN not in caplog.text


def test_thresholds_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLICIT_ALERTS__ERROR_RATE", "0.5")
    monkeypatch.setenv("SOLICIT_ALERTS__ERROR_WINDOW", "PT30M")

    alerts = Settings().alerts

    assert (alerts.error_rate, alerts.error_window, alerts.error_min_calls) == (0.5, timedelta(minutes=30), 20)
    assert (alerts.deadline_hours, alerts.no_sends_days, alerts.dead_letter_per_minute) == (48, 3, 10)
    assert alerts.evaluate_interval == 30.0
