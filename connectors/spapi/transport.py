"""An ``httpx`` transport that sends over ``aiohttp``: httpx's API and error classes, aiohttp's connection pool.

Why: httpx's own pool (``httpcore``) rescans every connection on each request start and finish (and, for each
idle connection, every connection again), so with many sellers in flight one SP-API call cost ~2.5 ms of CPU in
the worker; the same calls through this transport cost ~0.4 ms (``bench/sending.py``, issue 12 P3). Everything
above the transport is unchanged: the client still builds ``httpx.Request``s, reads ``httpx.Response``s and catches
httpx's exceptions, and tests still inject ``httpx.MockTransport``.

Requests take connections **first come, first served** (a FIFO semaphore of ``max_connections`` in front of
aiohttp's pool): aiohttp hands a just-released connection to whoever asks next, so a seller whose request just
came back took it again for its next one, and with more sellers than connections half of them waited for the
others' whole burst before their first call (their quota idle meanwhile).

What is kept from httpx's default transport: TLS verification with httpx's context (certifi, or
``SSL_CERT_FILE``/``SSL_CERT_DIR``), proxies from the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``,
read once, when the transport is made: aiohttp's own ``trust_env`` reads them and ``~/.netrc`` again on every
request, in a thread), no redirects followed, the body handed to httpx undecoded (httpx decodes
``Content-Encoding``), cookies left to httpx. Failures become the httpx
exception that says whether the request may have reached the server, which is what the client's retry rules read:

* could not connect, or no connection in time -> :class:`httpx.ConnectError` / :class:`httpx.ConnectTimeout`
  (nothing sent);
* no answer in time, connection dropped, malformed answer -> :class:`httpx.ReadTimeout` /
  :class:`httpx.RemoteProtocolError` / :class:`httpx.ReadError` (it may have been processed).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(max_connections=100))``; closed with the client."""

    def __init__(self, *, max_connections: int = 100, trust_env: bool = True) -> None:
        self._max_connections = max_connections
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(max_connections)
        self._proxies = urllib.request.getproxies_environment() if trust_env else {}
        self._proxy_by_origin: dict[tuple[str, str], str | None] = {}

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy for ``url``'s origin from the environment, as httpx would pick it (``NO_PROXY`` honoured)."""
        origin = (url.scheme, url.host)
        if origin not in self._proxy_by_origin:
            proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
            if proxy and _bypassed(url.host, self._proxies.get("no", "")):
                proxy = None
            self._proxy_by_origin[origin] = proxy or None
        return self._proxy_by_origin[origin]

    def _open(self) -> aiohttp.ClientSession:
        """The session, created on first use (it must be created inside the running event loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                ssl=httpx.create_ssl_context(trust_env=self._trust_env),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
        body = await request.aread()
        timeouts = request.extensions.get("timeout") or {}
        await self._take_slot(request, timeouts.get("pool"))
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                proxy=self._proxy(request.url),
                timeout=_timeout(timeouts),
            ) as answer:
                content = await answer.read()
        except Exception as exc:
            raise _as_httpx(exc, request) from exc
        finally:
            self._slots.release()
        return httpx.Response(
            answer.status,
            headers=list(answer.raw_headers),
            stream=httpx.ByteStream(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode("latin-1")},
        )

    async def _take_slot(self, request: httpx.Request, pool_timeout: float | None) -> None:
        """Wait for a connection slot, in arrival order; :class:`httpx.PoolTimeout` (nothing sent) after the pool
        timeout."""
        try:
            async with asyncio.timeout(pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in time", request=request) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _bypassed(host: str, no_proxy: str) -> bool:
    """Does ``NO_PROXY`` exempt ``host``? ``*``, the host itself, or a domain it is under."""
    for entry in (item.strip().lower().lstrip(".") for item in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def _timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's per-phase timeouts as aiohttp's (the pool wait is the slot's): connect, then each read."""
    connect = timeouts.get("connect")
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=timeouts.get("read"))


def _as_httpx(exc: Exception, request: httpx.Request) -> Exception:
    """The httpx exception for an aiohttp failure: whether the request may have been sent is what matters."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientError):
        return httpx.ReadError(message, request=request)
    return exc
