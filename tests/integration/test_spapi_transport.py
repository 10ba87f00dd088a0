"""The aiohttp-backed transport over real loopback HTTP: what httpx's own transport did, and failures named for
whether the request may have reached the server (the client's retry rules read exactly that)."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web

from connectors.spapi.transport import AiohttpTransport

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_request_and_its_answer_go_through_unchanged(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)
        body = gzip.compress(b'{"ok": true}')
        headers = {"content-encoding": "gzip", "x-amzn-RequestId": "rid-1", "content-type": "application/hal+json"}
        return web.Response(status=201, body=body, headers=headers)

    base = await serve(handler)
    async with httpx.AsyncClient(transport=AiohttpTransport(), headers={"user-agent": "solicit/test"}) as client:
        answer = await client.post(
            f"{base}/solicitations/v1/orders/111", params={"marketplaceIds": "ATVPDKIKX0DER"}, headers={"x-a": "b"}
        )
    assert answer.status_code == 201
    assert answer.json() == {"ok": True}  # httpx decoded the gzip body
    assert answer.headers["x-amzn-RequestId"] == "rid-1"
    (request,) = seen
    assert request.path_qs == "/solicitations/v1/orders/111?marketplaceIds=ATVPDKIKX0DER"
    assert request.headers["user-agent"] == "solicit/test"
    assert request.headers["x-a"] == "b"
    assert "cookie" not in request.headers


async def test_redirects_are_not_followed(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"location": "/elsewhere"})

    base = await serve(handler)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        answer = await client.get(f"{base}/x")
    assert answer.status_code == 302


async def test_a_refused_connection_is_a_connect_error_nothing_was_sent() -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/x")


async def test_no_answer_in_time_is_a_read_timeout(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    base = await serve(handler)
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{base}/x")


async def test_a_dropped_connection_is_a_transport_error_that_may_have_taken_effect(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # the server processed it, then the connection died
        return web.Response(text="never arrives")

    base = await serve(handler)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.TransportError) as caught:
            await client.post(f"{base}/x")
    assert isinstance(caught.value, httpx.RemoteProtocolError)  # not a ConnectError: the client reads "maybe sent"


async def test_requests_wait_for_a_connection_in_arrival_order(serve: Callable[[Handler], Awaitable[str]]) -> None:
    order: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        order.append(request.path)
        await asyncio.sleep(0.05)
        return web.Response(text="ok")

    base = await serve(handler)
    async with httpx.AsyncClient(transport=AiohttpTransport(max_connections=1)) as client:

        async def lane(name: str) -> None:
            for step in range(3):
                await client.get(f"{base}/{name}{step}")

        await asyncio.gather(lane("a"), lane("b"))
    # b's first request waited for a's first, then went before a's second.
    assert order == ["/a0", "/b0", "/a1", "/b1", "/a2", "/b2"]


async def test_no_connection_free_in_time_is_a_pool_timeout(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="ok")

    base = await serve(handler)
    timeout = httpx.Timeout(5.0, pool=0.1)
    async with httpx.AsyncClient(transport=AiohttpTransport(max_connections=1), timeout=timeout) as client:
        slow = asyncio.create_task(client.get(f"{base}/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await client.get(f"{base}/waits")
        assert (await slow).status_code == 200


def test_proxies_come_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.amazon.test")
    transport = AiohttpTransport()
    monkeypatch.delenv("HTTPS_PROXY")  # read when the transport was made
    assert transport._proxy(httpx.URL("https://sellingpartnerapi-na.amazon.com/x")) == "http://proxy.internal:3128"
    assert transport._proxy(httpx.URL("https://api.amazon.test/x")) is None
    assert transport._proxy(httpx.URL("http://localhost:8000/x")) is None
    assert AiohttpTransport(trust_env=False)._proxy(httpx.URL("https://sellingpartnerapi-na.amazon.com/x")) is None
