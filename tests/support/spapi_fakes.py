"""A scripted Amazon behind ``httpx.MockTransport`` and a fake clock, for client unit tests (no sockets, no sleeps)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.clock import ManualClock
from connectors.spapi import AppCredentials, ClientConfig, SellerCredentials, SolicitationsClient

LWA_URL = "https://lwa.test/auth/o2/token"
US = "ATVPDKIKX0DER"
ORDER = "111-1111111-1111111"
REFRESH_TOKEN = "Atzr|REFRESH-SECRET-0001"
CLIENT_SECRET = "CLIENT-SECRET-0001"
ACCESS_PREFIX = "Atza|ACCESS-SECRET-"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def spapi_error(status: int, code: str, message: str, details: str = "", request_id: str = "rid") -> httpx.Response:
    return httpx.Response(
        status,
        json={"errors": [{"code": code, "message": message, "details": details}]},
        headers={"x-amzn-RequestId": request_id},
    )


def actions(*names: str, request_id: str = "rid", rate: str | None = None) -> httpx.Response:
    headers = {"x-amzn-RequestId": request_id}
    if rate is not None:
        headers["x-amzn-RateLimit-Limit"] = rate
    body = {
        "_links": {
            "actions": [{"href": f"/x/{n}", "name": n} for n in names],
            "self": {"href": "/solicitations/v1/orders/x"},
        }
    }
    return httpx.Response(200, json=body, headers=headers)


def created(request_id: str = "rid") -> httpx.Response:
    return httpx.Response(201, json={}, headers={"x-amzn-RequestId": request_id})


def token_response(n: int, expires_in: int = 3600) -> httpx.Response:
    body = {"access_token": f"{ACCESS_PREFIX}{n}", "refresh_token": REFRESH_TOKEN, "token_type": "bearer"}
    return httpx.Response(200, json={**body, "expires_in": expires_in})


class FakeAmazon:
    """Answers LWA with fresh tokens (unless scripted) and SP-API from a script, recording every request."""

    def __init__(self, *spapi: Step, lwa: list[Step] | None = None, expires_in: int = 3600) -> None:
        self.spapi: deque[Step] = deque(spapi)
        self.lwa: deque[Step] = deque(lwa or [])
        self.expires_in = expires_in
        self.lwa_requests: list[httpx.Request] = []
        self.spapi_requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == LWA_URL:
            self.lwa_requests.append(request)
            step: Step = self.lwa.popleft() if self.lwa else token_response(len(self.lwa_requests), self.expires_in)
        else:
            self.spapi_requests.append(request)
            if not self.spapi:
                raise AssertionError(f"unexpected SP-API request {request.method} {request.url}")
            step = self.spapi.popleft()
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    def form(self, index: int = 0) -> dict[str, str]:
        pairs = httpx.QueryParams(self.lwa_requests[index].content.decode())
        return dict(pairs)


class FakeSleep:
    """``sleep`` that advances the manual clock instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(max(0.0, seconds))


def seller(seller_id: str = "SELLER1", refresh_token: str = REFRESH_TOKEN) -> SellerCredentials:
    return SellerCredentials(seller_id=seller_id, refresh_token=SecretStr(refresh_token))


def app() -> AppCredentials:
    return AppCredentials(client_id="amzn1.application-oa2-client.test", client_secret=SecretStr(CLIENT_SECRET))


def make_client(
    amazon: FakeAmazon | Callable[[httpx.Request], Any],
    *,
    config: ClientConfig | None = None,
    clock: ManualClock | None = None,
    spapi_endpoint: str | None = None,
) -> tuple[SolicitationsClient, ManualClock, FakeSleep]:
    clock = clock or ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    sleep = FakeSleep(clock)
    config = config or ClientConfig(backoff_base=0.5, backoff_cap=4.0)
    client = SolicitationsClient(
        app=app(),
        clock=clock,
        spapi_endpoint=spapi_endpoint,
        lwa_endpoint=LWA_URL,
        config=config,
        transport=httpx.MockTransport(amazon.handler if isinstance(amazon, FakeAmazon) else amazon),
        sleep=sleep,
    )
    return client, clock, sleep


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None
