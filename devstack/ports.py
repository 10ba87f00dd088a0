"""Local TCP ports: is one free, and a few free ones. Shared by the Kafka tooling, the sandbox and the demo."""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True when a listener could bind ``host:port`` now.

    SO_REUSEADDR is set, as servers (the JVM, aiohttp) set it on their sockets, so a port that only has
    connections in TIME_WAIT counts as free. A port with a live listener does not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def find_free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """``count`` distinct ports the kernel considers free right now (all held open together, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
