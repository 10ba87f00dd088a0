"""Fixtures for the SP-API client and the local sandbox: a clock tests can jump, sandboxes on free ports, clients.

The sandbox runs in the test's own event loop over real loopback HTTP; everything started here is closed at
teardown (unclosed sockets would turn into errors under ``filterwarnings = error``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.clock import Clock
from connectors.spapi import AppCredentials, ClientConfig, SellerCredentials, SolicitationsClient
from devstack import spapi_models
from devstack.sandbox import OrderIn, SandboxConfig, SandboxServer, SellerIn

US = "ATVPDKIKX0DER"
SOLICITATIONS_MODEL = spapi_models.SOLICITATIONS


class JumpClock:
    """Business time and real monotonic time, both of which a test can move forward at once.

    Unlike ``ManualClock`` the monotonic part keeps running, so real rate limits and timeouts still work.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._origin = time.monotonic()
        self._offset = 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin + self._offset)

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def real_seconds(self, business: timedelta) -> float:
        return business.total_seconds()

    def advance(self, delta: timedelta | float) -> None:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        self._offset += seconds


def seller(index: int = 1) -> SellerCredentials:
    return SellerCredentials(seller_id=f"SELLER{index}", refresh_token=SecretStr(f"Atzr|IT-REFRESH-{index}"))


def seller_in(index: int = 1, **plan: Any) -> SellerIn:
    credentials = seller(index)
    return SellerIn(seller_id=credentials.seller_id, refresh_token=credentials.refresh_token, **plan)


def shipped_order(
    order_id: str, *, clock: Clock, seller_index: int = 1, days_since_delivery: float = 10, **overrides: Any
) -> OrderIn:
    """An order whose window is open today (delivered ``days_since_delivery`` days ago)."""
    delivered = clock.now() - timedelta(days=days_since_delivery)
    values: dict[str, Any] = {
        "seller_id": seller(seller_index).seller_id,
        "order_id": order_id,
        "marketplace_id": US,
        "earliest_delivery": delivered - timedelta(days=2),
        "latest_delivery": delivered,
        "status": "Shipped",
    }
    values.update(overrides)
    return OrderIn(**values)


def app_for(sandbox: SandboxServer) -> AppCredentials:
    config = sandbox.state.config
    return AppCredentials(client_id=config.client_id, client_secret=config.client_secret)


SandboxFactory = Callable[..., Awaitable[SandboxServer]]
ClientFactory = Callable[..., Awaitable[SolicitationsClient]]

FAST_RETRIES = ClientConfig(backoff_base=0.02, backoff_cap=0.1, call_deadline=20.0, request_timeout=5.0)
"""Client tuning for integration tests: real retries, short backoff."""


@pytest.fixture
def jump_clock() -> JumpClock:
    return JumpClock()


@pytest.fixture
async def sandbox_factory(jump_clock: JumpClock) -> AsyncIterator[SandboxFactory]:
    started: list[SandboxServer] = []

    async def start(config: SandboxConfig | None = None, *, clock: Any = None, **fields: Any) -> SandboxServer:
        if config is None:
            fields.setdefault("sellers", (seller_in(1), seller_in(2)))
            config = SandboxConfig(**fields)
        server = SandboxServer(config, clock=clock or jump_clock)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def client_factory(jump_clock: JumpClock) -> AsyncIterator[ClientFactory]:
    clients: list[SolicitationsClient] = []

    async def make(sandbox: SandboxServer, config: ClientConfig | None = None, **kwargs: Any) -> SolicitationsClient:
        kwargs.setdefault("app", app_for(sandbox))
        kwargs.setdefault("clock", jump_clock)
        kwargs.setdefault("spapi_endpoint", sandbox.url)
        kwargs.setdefault("lwa_endpoint", sandbox.lwa_url)
        client = SolicitationsClient(config=config or FAST_RETRIES, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def solicitations_model_path() -> Path:
    """The official Solicitations model (vendored in ``devstack/spapi_models``)."""
    return SOLICITATIONS_MODEL
