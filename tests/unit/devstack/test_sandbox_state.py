"""The sandbox's rules, called directly (no HTTP) on a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.clock import ManualClock
from devstack.sandbox import MESSAGES, FaultConfig, OrderIn, SandboxConfig, SandboxState, ScriptedFault, SellerIn
from devstack.sandbox.protocol import RequestFacts
from devstack.sandbox.throttle import ServerBucket

US = "ATVPDKIKX0DER"
DE = "A1PA6795UKMFR9"
EDD = datetime(2026, 3, 1, 12, tzinfo=UTC)
LDD = datetime(2026, 3, 4, 12, tzinfo=UTC)
FORM_TYPE = "application/x-www-form-urlencoded"


def facts(token: str | None = None, marketplace: list[str] | None = None, **overrides: Any) -> RequestFacts:
    values: dict[str, Any] = {
        "method": "GET",
        "path": "/x",
        "query": {"marketplaceIds": [US] if marketplace is None else marketplace},
        "access_token": token,
        "user_agent": "test",
        "content_type": None,
        "body_bytes": 0,
    }
    values.update(overrides)
    return RequestFacts(**values)


def make_state(clock: ManualClock, **config: Any) -> SandboxState:
    sellers = (
        SellerIn(seller_id="S1", refresh_token=SecretStr("Atzr|one")),
        SellerIn(seller_id="S2", refresh_token=SecretStr("Atzr|two")),
    )
    return SandboxState(SandboxConfig(sellers=sellers, **config), clock)


def token_for(state: SandboxState, grant: str = "Atzr|one") -> str:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": grant,
        "client_id": state.config.client_id,
        "client_secret": state.config.client_secret.get_secret_value(),
    }
    reply = state.lwa_token(form, facts(content_type=FORM_TYPE))
    assert reply.status == 200, reply.body
    return str(reply.body["access_token"])


def order(order_id: str = "111-0000001-0000001", **overrides: Any) -> OrderIn:
    values: dict[str, Any] = {
        "seller_id": "S1",
        "order_id": order_id,
        "marketplace_id": US,
        "earliest_delivery": EDD,
        "latest_delivery": LDD,
        "status": "Shipped",
    }
    values.update(overrides)
    return OrderIn(**values)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(EDD + timedelta(days=10))


def offered(state: SandboxState, token: str, order_id: str = "111-0000001-0000001") -> bool:
    reply = state.solicitation_actions(order_id, facts(token))
    assert reply.status == 200
    return bool(reply.body["_links"]["actions"])


def message(reply: Any) -> str:
    return str(reply.body["errors"][0]["message"])


@pytest.mark.parametrize(
    ("now", "eligible"),
    [
        (EDD + timedelta(days=5) - timedelta(seconds=1), False),
        (EDD + timedelta(days=5), True),
        (LDD + timedelta(days=30), True),
        (LDD + timedelta(days=30, seconds=1), False),
    ],
    ids=["just-before-start", "start", "end", "just-after-end"],
)
def test_window_boundaries_for_get_and_post(now: datetime, eligible: bool) -> None:
    clock = ManualClock(now)
    state = make_state(clock)
    state.add_orders([order()])
    token = token_for(state)
    assert offered(state, token) is eligible
    reply = state.create_solicitation("111-0000001-0000001", facts(token))
    if eligible:
        assert reply.status == 201
    else:
        assert (reply.status, message(reply)) == (403, MESSAGES["outside_window"])


def test_a_simulated_clock_moving_forward_opens_the_window(clock: ManualClock) -> None:
    state = make_state(clock)
    now = clock.now()
    state.add_orders([order(earliest_delivery=now + timedelta(days=2), latest_delivery=now + timedelta(days=3))])
    token = token_for(state)
    assert not offered(state, token)
    clock.advance(timedelta(days=7))
    assert offered(state, token_for(state))


def test_only_one_solicitation_per_order(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_orders([order()])
    token = token_for(state)
    assert state.create_solicitation("111-0000001-0000001", facts(token)).status == 201
    second = state.create_solicitation("111-0000001-0000001", facts(token))
    assert (second.status, message(second)) == (403, MESSAGES["not_available"])
    assert not offered(state, token)
    assert [s.order_id for s in state.solicitations] == ["111-0000001-0000001"]


def test_reloading_an_order_keeps_it_solicited(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_orders([order()])
    token = token_for(state)
    state.create_solicitation("111-0000001-0000001", facts(token))
    state.add_orders([order()])
    assert state.orders()[0]["solicited"] is True


@pytest.mark.parametrize("status", ["Canceled", "Unshipped", "Pending"])
def test_only_shipped_orders_are_eligible(clock: ManualClock, status: str) -> None:
    state = make_state(clock)
    state.add_orders([order(status=status)])
    token = token_for(state)
    assert not offered(state, token)
    reply = state.create_solicitation("111-0000001-0000001", facts(token))
    assert (reply.status, message(reply)) == (403, MESSAGES["not_available"])


def test_order_of_another_seller_or_unknown_is_404(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_orders([order(seller_id="S2")])
    token = token_for(state)
    assert state.solicitation_actions("111-0000001-0000001", facts(token)).status == 404
    assert state.create_solicitation("999-0000000-0000000", facts(token)).status == 404


@pytest.mark.parametrize(
    "marketplaces",
    [[], [US, US], [f"{US},{DE}"], ["NOT-A-MARKETPLACE"], [DE]],
    ids=["missing", "repeated", "csv", "unknown", "other-marketplace"],
)
def test_marketplace_ids_must_be_one_known_and_the_orders(clock: ManualClock, marketplaces: list[str]) -> None:
    state = make_state(clock)
    state.add_orders([order()])
    reply = state.create_solicitation("111-0000001-0000001", facts(token_for(state), marketplace=marketplaces))
    assert (reply.status, message(reply)) == (400, MESSAGES["invalid_marketplace"])
    assert state.solicitations == []


def test_body_limits(clock: ManualClock) -> None:
    state = make_state(clock, max_body_bytes=10)
    state.add_orders([order()])
    token = token_for(state)
    json_body = facts(token, body_bytes=11, content_type="application/json")
    too_big = state.create_solicitation("111-0000001-0000001", json_body)
    form = state.create_solicitation("111-0000001-0000001", facts(token, body_bytes=5, content_type=FORM_TYPE))
    assert (too_big.status, form.status) == (413, 415)
    assert state.solicitations == []


def test_access_tokens_expire_and_die_with_the_grant(clock: ManualClock) -> None:
    state = make_state(clock, token_lifetime=60.0)
    state.add_orders([order()])
    token = token_for(state)
    assert state.solicitation_actions("111-0000001-0000001", facts(token)).status == 200
    clock.advance(60)
    expired = state.solicitation_actions("111-0000001-0000001", facts(token))
    assert (expired.status, expired.body["errors"][0]["details"]) == (403, MESSAGES["token_invalid"])
    fresh = token_for(state)
    assert state.revoke_seller("S1")
    assert state.solicitation_actions("111-0000001-0000001", facts(fresh)).status == 403
    form = {"grant_type": "refresh_token", "refresh_token": "Atzr|one", "client_id": state.config.client_id}
    form["client_secret"] = state.config.client_secret.get_secret_value()
    assert state.lwa_token(form, facts(content_type=FORM_TYPE)).body["error"] == "invalid_grant"


def test_missing_token_is_denied_without_touching_the_bucket(clock: ManualClock) -> None:
    state = make_state(clock, burst=1)
    state.add_orders([order()])
    replies = [state.solicitation_actions("111-0000001-0000001", facts(None)) for _ in range(3)]
    assert {r.status for r in replies} == {403}
    assert replies[0].body["errors"][0]["details"] == MESSAGES["token_missing"]
    assert "x-amzn-RateLimit-Limit" not in replies[0].headers
    assert state.solicitation_actions("111-0000001-0000001", facts(token_for(state))).status == 200


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"refresh_token": "Atzr|one", "grant_type": "refresh_token", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "scope": "s"}, 400, "invalid_scope"),
        ({"grant_type": "authorization_code", "code": "c"}, 400, "unsupported_grant_type"),
        ({"grant_type": "refresh_token", "refresh_token": "Atzr|unknown"}, 400, "invalid_grant"),
        ({"refresh_token": "Atzr|one"}, 400, "invalid_request"),
    ],
)
def test_lwa_errors(clock: ManualClock, form: dict[str, str], status: int, error: str) -> None:
    state = make_state(clock)
    full = {"client_id": state.config.client_id, "client_secret": state.config.client_secret.get_secret_value()}
    reply = state.lwa_token({**full, **form}, facts(content_type=FORM_TYPE))
    assert (reply.status, reply.body["error"]) == (status, error)
    assert "access_token" not in reply.body


def test_throttle_is_per_seller_and_operation(clock: ManualClock) -> None:
    state = make_state(clock, rate=1.0, burst=2)
    state.add_orders([order(), order("222-0000002-0000002", seller_id="S2")])
    one, two = token_for(state), token_for(state, "Atzr|two")
    statuses = [state.solicitation_actions("111-0000001-0000001", facts(one)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert state.solicitation_actions("222-0000002-0000002", facts(two)).status == 200
    assert state.create_solicitation("111-0000001-0000001", facts(one)).status == 201
    clock.advance(1.0)
    assert state.solicitation_actions("111-0000001-0000001", facts(one)).status == 200


def test_rate_limit_header_only_on_documented_statuses(clock: ManualClock) -> None:
    state = make_state(clock, burst=1)
    state.add_orders([order()])
    token = token_for(state)
    ok = state.solicitation_actions("111-0000001-0000001", facts(token))
    throttled = state.solicitation_actions("111-0000001-0000001", facts(token))
    assert ok.headers["x-amzn-RateLimit-Limit"] == "1.0"
    assert throttled.status == 429
    assert "x-amzn-RateLimit-Limit" not in throttled.headers
    assert all("x-amzn-RequestId" in r.headers for r in (ok, throttled))


def test_seller_specific_rate_plan_is_announced(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_seller(SellerIn(seller_id="S1", refresh_token=SecretStr("Atzr|one"), rate=2.5, burst=10))
    state.add_orders([order()])
    reply = state.solicitation_actions("111-0000001-0000001", facts(token_for(state)))
    assert reply.headers["x-amzn-RateLimit-Limit"] == "2.5"


def test_scripted_faults_fire_once_in_order(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_orders([order()])
    token = token_for(state)
    state.script_faults(
        [
            ScriptedFault(fault="503", operation="createProductReviewAndSellerFeedbackSolicitation"),
            ScriptedFault(fault="ambiguous", operation="createProductReviewAndSellerFeedbackSolicitation"),
        ]
    )
    assert state.solicitation_actions("111-0000001-0000001", facts(token)).status == 200  # not matching
    before = state.create_solicitation("111-0000001-0000001", facts(token))
    assert (before.status, state.solicitations) == (503, [])
    ambiguous = state.create_solicitation("111-0000001-0000001", facts(token))
    assert ambiguous.status == 500
    assert len(state.solicitations) == 1  # the effect happened
    again = state.create_solicitation("111-0000001-0000001", facts(token))
    assert (again.status, message(again)) == (403, MESSAGES["not_available"])
    assert [c.fault for c in state.calls[-3:]] == ["503", "ambiguous", None]


def test_scripted_faults_wait_for_a_call_that_passes_the_rate_limit(clock: ManualClock) -> None:
    state = make_state(clock, burst=1)
    state.add_orders([order()])
    token = token_for(state)
    state.solicitation_actions("111-0000001-0000001", facts(token))
    state.script_faults([ScriptedFault(fault="500")])
    assert state.solicitation_actions("111-0000001-0000001", facts(token)).status == 429
    clock.advance(1)
    assert state.solicitation_actions("111-0000001-0000001", facts(token)).status == 500
    assert state.scripted_faults() == []


def statuses_with_seed(seed: int) -> list[int]:
    clock = ManualClock(EDD + timedelta(days=10))
    state = make_state(clock, seed=seed, burst=1000, faults=FaultConfig(error_rate=0.5))
    state.add_orders([order()])
    token = token_for(state)
    return [state.solicitation_actions("111-0000001-0000001", facts(token)).status for _ in range(40)]


def test_random_faults_are_reproducible_with_a_seed() -> None:
    first = statuses_with_seed(7)
    assert first == statuses_with_seed(7)
    assert {200, 500, 503} <= set(first)
    assert first != statuses_with_seed(8)


def test_reset_returns_to_the_starting_state(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_seller(SellerIn(seller_id="S9", refresh_token=SecretStr("Atzr|nine")))
    state.add_orders([order()])
    state.create_solicitation("111-0000001-0000001", facts(token_for(state)))
    state.set_faults(FaultConfig(latency=1.0))
    state.reset()
    assert (state.calls, state.solicitations, state.orders(), state.faults) == ([], [], [], FaultConfig())
    form = {"grant_type": "refresh_token", "refresh_token": "Atzr|nine", "client_id": state.config.client_id}
    form["client_secret"] = state.config.client_secret.get_secret_value()
    assert state.lwa_token(form, facts(content_type=FORM_TYPE)).status == 400


def test_ledger_never_holds_a_token(clock: ManualClock) -> None:
    state = make_state(clock)
    state.add_orders([order()])
    token = token_for(state)
    state.create_solicitation("111-0000001-0000001", facts(token))
    state.solicitation_actions("111-0000001-0000001", facts("Atza|forged"))
    text = repr(state.calls) + repr(state.solicitations)
    for secret in (token, "Atza|forged", "Atzr|one", state.config.client_secret.get_secret_value()):
        assert secret not in text
    assert [c.has_access_token for c in state.calls] == [False, True, True]


def test_server_bucket_matches_amazons_description() -> None:
    bucket = ServerBucket.full(rate=1.0, burst=5, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.try_take(0.999)
    assert bucket.try_take(1.0)
    assert bucket.try_take(100.0)
    assert bucket.tokens == pytest.approx(4.0)
