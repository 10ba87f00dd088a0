"""Questions the network answers about a local broker: is a port free, does a broker answer metadata requests.

Kept apart from the process lifecycle (broker.py) because the test fixtures and the CLI ask them too, and because
they are the only place the tooling talks Kafka's protocol (through aiokafka, the client the services use).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from connectors.kafka.config import DEFAULT_HOST

_T = TypeVar("_T")


def port_is_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """True when a listener could bind ``host:port`` now.

    SO_REUSEADDR is set, as the JVM sets it on its server sockets, so a port that only has connections in
    TIME_WAIT counts as free. A port with a live listener does not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def find_free_ports(count: int, host: str = DEFAULT_HOST) -> list[int]:
    """``count`` distinct ports the kernel considers free right now (all held open together, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def metadata_answers(bootstrap: str, *, timeout: float = 5.0) -> bool:
    """True when the broker at ``bootstrap`` (``host:port``) answers a Metadata request that lists a broker.

    A plain TCP connect comes first. It is cheap, and it keeps aiokafka from logging a connection error on
    every poll while the port is still closed.
    """
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout, 1.0)).close()
    except OSError:
        return False
    return _run_sync(lambda: _metadata_lists_a_broker(bootstrap, limit_s=timeout))


async def _metadata_lists_a_broker(bootstrap: str, *, limit_s: float) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="solicit-readiness", request_timeout_ms=int(limit_s * 1000)
    )
    try:
        async with asyncio.timeout(limit_s):
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
    return bool(cluster.get("brokers"))


def _run_sync(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, also when the caller is inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
