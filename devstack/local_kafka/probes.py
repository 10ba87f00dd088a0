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

from devstack.ports import find_free_ports, port_is_free

_T = TypeVar("_T")

__all__ = ["find_free_ports", "metadata_answers", "port_is_free"]


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
