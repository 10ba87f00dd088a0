"""The SP-API client against the in-process sandbox over real loopback HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import SecretStr

from connectors.spapi import (
    AccessDenied,
    ActionsResult,
    AppCredentials,
    AppCredentialsRejected,
    AuthorizationRevoked,
    ClientConfig,
    NotAvailable,
    OutsideWindow,
    RejectedRequest,
    RetryLater,
    Sent,
    UnknownMarketplace,
)
from connectors.spapi.client import OPERATION_CREATE, OPERATION_GET
from devstack.sandbox import FaultConfig, SandboxServer, ScriptedFault
from tests.support.spapi import (
    FAST_RETRIES,
    US,
    ClientFactory,
    JumpClock,
    SandboxFactory,
    seller,
    seller_in,
    shipped_order,
)

pytestmark = pytest.mark.integration

ORDER = "111-0000001-0000001"


def lwa_calls(sandbox: SandboxServer, seller_id: str) -> int:
    return sum(1 for c in sandbox.state.calls if c.operation == "lwaToken" and c.seller_id == seller_id)


async def test_get_then_send_then_second_send_is_not_available(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    client = await client_factory(sandbox)
    actions = await client.get_solicitation_actions(seller(), ORDER, US)
    sent = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    again = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    after = await client.get_solicitation_actions(seller(), ORDER, US)
    assert actions.offered and isinstance(sent, Sent)
    assert isinstance(again, NotAvailable) and not again.maybe_sent
    assert after == ActionsResult(offered=False, request_id=after.request_id)
    ledger_ids = [c.request_id for c in sandbox.state.calls if c.operation != "lwaToken"]
    assert [actions.request_id, sent.request_id, again.request_id, after.request_id] == ledger_ids
    assert [(s.seller_id, s.order_id, s.request_id) for s in sandbox.state.solicitations] == [
        ("SELLER1", ORDER, sent.request_id)
    ]


async def test_concurrent_requests_cost_one_token_exchange_per_seller(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sellers = tuple(seller_in(i, rate=100.0, burst=100) for i in range(1, 4))
    sandbox = await sandbox_factory(sellers=sellers)
    keys = [(i, f"{i}00-0000000-{n:07d}") for i in (1, 2, 3) for n in range(10)]
    sandbox.state.add_orders([shipped_order(o, clock=jump_clock, seller_index=i) for i, o in keys])
    client = await client_factory(sandbox, ClientConfig(rate=100.0, burst=100))
    results = await asyncio.gather(*(client.get_solicitation_actions(seller(i), o, US) for i, o in keys))
    assert all(r.offered for r in results)
    assert [lwa_calls(sandbox, f"SELLER{i}") for i in (1, 2, 3)] == [1, 1, 1]


async def test_tokens_are_refreshed_ahead_of_expiry(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory(token_lifetime=600.0)
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    client = await client_factory(sandbox, ClientConfig(token_refresh_margin=120.0))
    await client.get_solicitation_actions(seller(), ORDER, US)
    jump_clock.advance(470)  # 130 s left: still used
    await client.get_solicitation_actions(seller(), ORDER, US)
    assert lwa_calls(sandbox, "SELLER1") == 1
    jump_clock.advance(20)  # 110 s left: inside the margin, replaced before the sandbox would refuse it
    await client.get_solicitation_actions(seller(), ORDER, US)
    assert lwa_calls(sandbox, "SELLER1") == 2
    jump_clock.advance(10_000)  # far past every expiry
    assert (await client.get_solicitation_actions(seller(), ORDER, US)).offered
    assert lwa_calls(sandbox, "SELLER1") == 3
    assert {c.status for c in sandbox.state.calls if c.operation != "lwaToken"} == {200}


async def test_a_token_dropped_early_is_replaced_once(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    client = await client_factory(sandbox)
    await client.get_solicitation_actions(seller(), ORDER, US)
    # Revoke and re-authorize: the cached access token dies, the refresh token works again.
    sandbox.state.revoke_seller("SELLER1")
    sandbox.state.add_seller(seller_in(1))
    assert isinstance(await client.create_product_review_and_seller_feedback(seller(), ORDER, US), Sent)
    statuses = [c.status for c in sandbox.state.calls if c.operation == OPERATION_CREATE]
    assert statuses == [403, 201]
    assert lwa_calls(sandbox, "SELLER1") == 2


async def test_revoked_grant_raises_authorization_revoked_without_a_retry_loop(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    other = shipped_order("222-0000002-0000002", clock=jump_clock, seller_index=2)
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock), other])
    client = await client_factory(sandbox)
    await client.get_solicitation_actions(seller(), ORDER, US)
    sandbox.state.revoke_seller("SELLER1")
    with pytest.raises(AuthorizationRevoked) as caught:
        await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert caught.value.seller_id == "SELLER1"
    with pytest.raises(AuthorizationRevoked):
        await client.get_solicitation_actions(seller(), ORDER, US)
    # cached token refused once (403), then one LWA call per operation: no loop
    assert lwa_calls(sandbox, "SELLER1") == 3
    assert [c.status for c in sandbox.state.calls if c.operation == "lwaToken"][-2:] == [400, 400]
    # other sellers are unaffected
    assert (await client.get_solicitation_actions(seller(2), "222-0000002-0000002", US)).offered


async def test_wrong_app_credentials(sandbox_factory: SandboxFactory, client_factory: ClientFactory) -> None:
    sandbox = await sandbox_factory()
    wrong = AppCredentials(client_id="sandbox-client-id", client_secret=SecretStr("not-the-secret"))
    client = await client_factory(sandbox, app=wrong)
    with pytest.raises(AppCredentialsRejected) as caught:
        await client.get_solicitation_actions(seller(), ORDER, US)
    assert (caught.value.status, caught.value.error) == (401, "invalid_client")


async def test_a_seller_without_access_gets_access_denied(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory(sellers=(seller_in(1, access_denied=True), seller_in(2)))
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    client = await client_factory(sandbox)
    with pytest.raises(AccessDenied) as caught:
        await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert caught.value.seller_id == "SELLER1"
    assert caught.value.request_id == sandbox.state.calls[-1].request_id
    # One retry with a fresh token, then the error: two LWA calls and two 403s, no loop.
    assert lwa_calls(sandbox, "SELLER1") == 2
    assert [c.status for c in sandbox.state.calls if c.operation == OPERATION_CREATE] == [403, 403]


async def test_outside_window_canceled_and_not_shipped(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders(
        [
            shipped_order("100-0000000-0000001", clock=jump_clock, days_since_delivery=1),
            shipped_order("100-0000000-0000002", clock=jump_clock, days_since_delivery=40),
            shipped_order("100-0000000-0000003", clock=jump_clock, status="Canceled"),
            shipped_order("100-0000000-0000004", clock=jump_clock, status="Unshipped"),
        ]
    )
    client = await client_factory(sandbox)
    ids = [f"100-0000000-000000{n}" for n in (1, 2, 3, 4)]
    results = [await client.create_product_review_and_seller_feedback(seller(), o, US) for o in ids]
    assert [type(r) for r in results] == [OutsideWindow, OutsideWindow, NotAvailable, NotAvailable]
    offered = [(await client.get_solicitation_actions(seller(), o, US)).offered for o in ids]
    assert offered == [False] * 4
    assert sandbox.state.solicitations == []


async def test_business_time_opens_the_window(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock, days_since_delivery=1)])
    client = await client_factory(sandbox)
    assert not (await client.get_solicitation_actions(seller(), ORDER, US)).offered
    jump_clock.advance(timedelta(days=5))
    assert (await client.get_solicitation_actions(seller(), ORDER, US)).offered


@pytest.mark.parametrize(
    ("order_seller", "order_marketplace", "status", "code"),
    [(2, US, 404, "NotFound"), (1, "A2EUQ1WTGCTBG2", 400, "InvalidInput")],
    ids=["other-sellers-order", "other-marketplace"],
)
async def test_requests_amazon_rejects_are_dead_letters(
    sandbox_factory: SandboxFactory,
    client_factory: ClientFactory,
    jump_clock: JumpClock,
    order_seller: int,
    order_marketplace: str,
    status: int,
    code: str,
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders(
        [shipped_order(ORDER, clock=jump_clock, seller_index=order_seller, marketplace_id=order_marketplace)]
    )
    client = await client_factory(sandbox)
    with pytest.raises(RejectedRequest) as caught:
        await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.request_id == sandbox.state.calls[-1].request_id
    assert len([c for c in sandbox.state.calls if c.operation == OPERATION_CREATE]) == 1


async def test_unknown_order_is_a_dead_letter(sandbox_factory: SandboxFactory, client_factory: ClientFactory) -> None:
    sandbox = await sandbox_factory()
    client = await client_factory(sandbox)
    with pytest.raises(RejectedRequest) as caught:
        await client.get_solicitation_actions(seller(), "999-9999999-9999999", US)
    assert caught.value.status == 404


async def test_unknown_marketplace_makes_no_call(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory
) -> None:
    sandbox = await sandbox_factory()
    client = await client_factory(sandbox)
    with pytest.raises(UnknownMarketplace):
        await client.get_solicitation_actions(seller(), ORDER, "XX-NOT-A-MARKETPLACE")
    assert sandbox.state.calls == []


@pytest.mark.parametrize("fault", ["500", "503", "429"])
async def test_failures_before_any_effect_are_retried(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock, fault: str
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    sandbox.state.script_faults([ScriptedFault(fault=fault, operation=OPERATION_CREATE)])
    client = await client_factory(sandbox)
    result = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert isinstance(result, Sent)
    assert [c.status for c in sandbox.state.calls if c.operation == OPERATION_CREATE] == [int(fault), 201]
    assert len(sandbox.state.solicitations) == 1
    bucket = client.limiter.bucket(("SELLER1", OPERATION_CREATE))
    assert (bucket.slowed_until > jump_clock.monotonic()) is (fault == "429")


async def test_ambiguous_failure_then_retry_is_reported_as_sent(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    sandbox.state.script_faults([ScriptedFault(fault="ambiguous", operation=OPERATION_CREATE)])
    client = await client_factory(sandbox)
    result = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert isinstance(result, NotAvailable)
    assert result.maybe_sent is True
    assert [c.status for c in sandbox.state.calls if c.operation == OPERATION_CREATE] == [500, 403]
    assert len(sandbox.state.solicitations) == 1


async def test_timeout_after_the_effect_then_retry_is_reported_as_sent(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory()
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    sandbox.state.script_faults([ScriptedFault(fault="slow", operation=OPERATION_CREATE, delay=1.5)])
    client = await client_factory(sandbox, ClientConfig(request_timeout=0.5, backoff_base=0.02, backoff_cap=0.1))
    result = await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert result == NotAvailable(request_id=sandbox.state.calls[-1].request_id, maybe_sent=True)
    assert len(sandbox.state.solicitations) == 1


async def test_persistent_server_errors_become_retry_later(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory(faults=FaultConfig(error_rate=1.0), seed=3)
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    client = await client_factory(sandbox, ClientConfig(max_attempts=3, backoff_base=0.02, backoff_cap=0.05))
    with pytest.raises(RetryLater) as get_error:
        await client.get_solicitation_actions(seller(), ORDER, US)
    with pytest.raises(RetryLater) as post_error:
        await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert get_error.value.status in (500, 503) and not get_error.value.maybe_sent
    assert post_error.value.maybe_sent  # a 5xx on a POST is ambiguous to the client
    assert post_error.value.request_id == sandbox.state.calls[-1].request_id
    assert sandbox.state.solicitations == []


async def test_unreachable_endpoint_is_retry_later_not_ambiguous(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory
) -> None:
    sandbox = await sandbox_factory()
    closed = await sandbox_factory()
    closed_url = closed.url
    await closed.stop()
    config = ClientConfig(max_attempts=2, backoff_base=0.01, backoff_cap=0.02)
    client = await client_factory(sandbox, config, spapi_endpoint=closed_url)
    with pytest.raises(RetryLater) as caught:
        await client.create_product_review_and_seller_feedback(seller(), ORDER, US)
    assert caught.value.maybe_sent is False


async def test_client_adapts_to_the_announced_rate(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    sandbox = await sandbox_factory(sellers=(seller_in(1, rate=4.0, burst=5),))
    sandbox.state.add_orders([shipped_order(ORDER, clock=jump_clock)])
    client = await client_factory(sandbox)
    await client.get_solicitation_actions(seller(), ORDER, US)
    assert client.limiter.bucket(("SELLER1", OPERATION_GET)).rate == 4.0
    assert client.limiter.bucket(("SELLER1", OPERATION_CREATE)).rate == 1.0


async def test_a_client_that_overestimates_the_plan_recovers_from_429s(
    sandbox_factory: SandboxFactory, client_factory: ClientFactory, jump_clock: JumpClock
) -> None:
    # Amazon grants this seller burst 2, the client assumes the default 5 (4 with headroom).
    sandbox = await sandbox_factory(sellers=(seller_in(1, rate=5.0, burst=2),))
    orders = [f"100-0000000-{n:07d}" for n in range(8)]
    sandbox.state.add_orders([shipped_order(o, clock=jump_clock) for o in orders])
    client = await client_factory(sandbox, FAST_RETRIES)
    results = await asyncio.gather(*(client.get_solicitation_actions(seller(), o, US) for o in orders))
    assert all(r.offered for r in results)
    statuses = [c.status for c in sandbox.state.calls if c.operation == OPERATION_GET]
    assert statuses.count(200) == 8
    assert 1 <= statuses.count(429) <= 4
