"""Running the sandbox: in-process on a free port (tests, benchmarks) or in the foreground (``solicit sandbox``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import TracebackType

from aiohttp import web

from connectors.clock import Clock

from .app import build_app
from .model import SandboxConfig
from .state import SandboxState

__all__ = ["SandboxServer", "serve"]

logger = logging.getLogger("devstack.sandbox")


class SandboxServer:
    """A sandbox listening on ``host:port`` (port 0 = a free port) inside the running event loop.

    ``async with SandboxServer(config, clock=...) as sandbox:`` then point the client at ``sandbox.url`` (SP-API
    base URL) and ``sandbox.lwa_url``; ``sandbox.state`` is the live state (ledger, orders) for assertions.
    """

    def __init__(
        self, config: SandboxConfig | None = None, *, clock: Clock, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SandboxState(config or SandboxConfig(), clock)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL of the SP-API paths (use as ``SOLICIT_SPAPI__ENDPOINT``)."""
        if self.port is None:
            raise RuntimeError("the sandbox is not running")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def lwa_url(self) -> str:
        """The LWA token URL (use as ``SOLICIT_SPAPI__LWA_ENDPOINT``)."""
        return f"{self.url}/auth/o2/token"

    async def start(self) -> None:
        """Bind and start serving."""
        runner = web.AppRunner(build_app(self.state), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        logger.info("sandbox listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def serve(config: SandboxConfig, *, clock: Clock, host: str, port: int) -> None:
    """Run a sandbox until SIGTERM or SIGINT (or cancellation).

    Both signals get explicit handlers: a process started from a non-interactive shell in the background
    inherits SIGINT as *ignored*, and Python then installs no KeyboardInterrupt handler of its own.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SandboxServer(config, clock=clock, host=host, port=port) as sandbox:
            logger.info("SP-API endpoint %s, LWA endpoint %s", sandbox.url, sandbox.lwa_url)
            await stop.wait()
            logger.info("stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
