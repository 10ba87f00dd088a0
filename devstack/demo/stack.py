"""A whole local stack as real processes: Kafka, SQS (moto server), the SP-API sandbox, the bridge, workers.

Used by ``solicit demo`` and by the end-to-end tests, so both run exactly what a user runs: every service is
the real ``solicit`` command in its own process, configured only through environment variables (the one
Settings object each process builds). The stack owns what it starts and stops it again, in reverse order,
with SIGTERM first and SIGKILL only after a deadline.

Business time is simulated (``SOLICIT_SIM__*``): every process gets the same start, speed and anchor, so the
worker's timers, the sandbox's windows and the scenario agree on "now" while weeks pass in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import SecretStr

from connectors.clock import SimulatedClock
from connectors.crypto import generate_key
from connectors.kafka import KafkaConnection
from devstack.local_kafka import LocalBroker, find_free_ports, port_is_free
from streams.settings import ENV_PREFIX, NESTED_DELIMITER, KafkaSettings

SANDBOX_CLIENT_ID = "demo-client-id"
SANDBOX_CLIENT_SECRET = "demo-client-secret"  # noqa: S105 - the sandbox's local demo credential


class StackError(RuntimeError):
    """A service of the local stack did not start or stop as expected; the message says which and why."""


@dataclass
class ChildProcess:
    """One service process, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_for_log(self, needle: str, timeout: float) -> None:
        """Return once ``needle`` appears in the log; :class:`StackError` if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if needle in self.log_path.read_text(errors="replace"):
                    return
            if not self.alive():
                raise StackError(f"{self.name} exited before it was ready:\n{self.log_tail()}")
            time.sleep(0.1)
        raise StackError(f"{self.name} not ready after {timeout:.0f} s (waited for {needle!r}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL at once (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class StackConfig:
    """What every process of one run shares."""

    run_dir: Path
    kafka_bootstrap: str
    sqs_endpoint: str
    queue_url: str
    sandbox_port: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    partitions: int = 4
    sim_start: datetime = datetime(2026, 3, 1, tzinfo=UTC)
    sim_speed: float = 43200.0
    sim_anchor: float = field(default_factory=time.time)
    secret_key: str = field(default_factory=generate_key)
    web_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """The bearer token of the workers' web API in this run (named ``demo``)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    kafka_security: KafkaConnection | None = None
    """A secured cluster (TLS, SASL): every process and helper connects as this says, its bootstrap servers in
    place of ``kafka_bootstrap``; the processes get it as ``SOLICIT_KAFKA__*`` variables. None (the default): the
    plain ``kafka_bootstrap``."""

    @property
    def topic_prefix(self) -> str:
        return f"run-{self.run_id}."

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def clock(self) -> SimulatedClock:
        return SimulatedClock(start=self.sim_start, speed=self.sim_speed, anchor=self.sim_anchor)

    def connection(self) -> KafkaConnection:
        """How this run reaches Kafka: ``kafka_security``, else the plain ``kafka_bootstrap``."""
        return self.kafka_security or KafkaConnection(bootstrap_servers=self.kafka_bootstrap)

    def kafka(self) -> KafkaSettings:
        """This run's cluster and topics, as the service's processes see them."""
        return KafkaSettings(
            **self.connection().model_dump(), partitions=self.partitions, topic_prefix=self.topic_prefix
        )

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a child process: the parent's, minus our own settings, plus this run's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLICIT_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.connection().bootstrap_servers,
                "AWS_ENDPOINT_URL_SQS": self.sqs_endpoint,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "demo",
                "AWS_SECRET_ACCESS_KEY": "demo",
                "SOLICIT_BRIDGE__QUEUE_URL": self.queue_url,
                "SOLICIT_KAFKA__TOPIC_PREFIX": self.topic_prefix,
                "SOLICIT_WORKER__APP_ID": f"solicit-{self.run_id}",
                "SOLICIT_KAFKA__PARTITIONS": str(self.partitions),
                "SOLICIT_WORKER__DATA_DIR": str(self.run_dir / "state"),
                "SOLICIT_SECRET_KEY": self.secret_key,
                "SOLICIT_SPAPI__ENDPOINT": self.sandbox_url,
                "SOLICIT_SPAPI__LWA_ENDPOINT": f"{self.sandbox_url}/auth/o2/token",
                "SOLICIT_SPAPI__LWA_CLIENT_ID": SANDBOX_CLIENT_ID,
                "SOLICIT_SPAPI__LWA_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
                "SOLICIT_SIM__START": self.sim_start.isoformat(),
                "SOLICIT_SIM__SPEED": str(self.sim_speed),
                "SOLICIT_SIM__ANCHOR": repr(self.sim_anchor),
                "SOLICIT_WEB__TOKENS": json.dumps({"demo": self.web_token}),
                "SOLICIT_WEB__BIND": "127.0.0.1",
                "SOLICIT_WEB__ADVERTISED_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.kafka_security is not None:
            env.update(kafka_environment(self.kafka_security))
        env.update(self.extra_env)
        env.update(overrides)
        return env


def kafka_environment(connection: KafkaConnection) -> dict[str, str]:
    """The ``SOLICIT_KAFKA__*`` variables that give a process ``connection`` (the settings that differ from the
    defaults). Secrets are written out in clear: the variables are for a child process's environment only."""
    group = f"{ENV_PREFIX}KAFKA{NESTED_DELIMITER}"
    env: dict[str, str] = {}
    for name, value in connection.model_dump(exclude_defaults=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[group + name.upper()] = str(value)
    return env


def solicit_argv(*args: str) -> list[str]:
    """The ``solicit`` command of this interpreter (works from a source tree and from an install)."""
    return [sys.executable, "-m", "streams.cli", *args]


class Stack:
    """The services of one run; start what you need, :meth:`close` stops all of it."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.children: list[ChildProcess] = []
        self.workers: dict[str, ChildProcess] = {}
        self.web_ports: dict[str, int] = {}
        """Each worker's web API port (kept across restarts of the same worker id)."""

    def _child(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> ChildProcess:
        log = self.config.run_dir / "logs" / f"{name}.log"
        child = ChildProcess(name, solicit_argv(*args), dict(env or self.config.env()), log)
        self.children.append(child)
        return child.start()

    def start_sandbox(self, *extra: str) -> ChildProcess:
        child = self._child(
            "sandbox",
            "sandbox",
            "--port",
            str(self.config.sandbox_port),
            "--client-id",
            SANDBOX_CLIENT_ID,
            "--client-secret",
            SANDBOX_CLIENT_SECRET,
            *extra,
            env=self.config.env(SOLICIT_LOG_LEVEL="warning"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.config.sandbox_url}/_sandbox/health", timeout=1).status_code == 200:
                    return child
            if not child.alive():
                break
            time.sleep(0.1)
        raise StackError(f"the sandbox did not come up:\n{child.log_tail()}")

    def start_bridge(self) -> ChildProcess:
        child = self._child("bridge", "bridge")
        child.wait_for_log("bridge started", timeout=60)
        return child

    def start_worker(self, worker_id: str, *, wait: bool = True, log_level: str = "info") -> ChildProcess:
        port = self.web_ports.get(worker_id)
        if port is None or not port_is_free(port):
            port = self.web_ports[worker_id] = find_free_ports(1)[0]
        env = self.config.env(SOLICIT_WORKER__ID=worker_id, SOLICIT_LOG_LEVEL=log_level, SOLICIT_WEB__PORT=str(port))
        child = self._child(f"worker-{worker_id}-{len(self.children)}", "worker", env=env)
        self.workers[worker_id] = child
        if wait:
            child.wait_for_log("sellers registry loaded", timeout=90)
        return child

    def web_url(self, worker_id: str) -> str:
        """The web API of ``worker_id`` (the dashboard is at ``/dashboard``)."""
        return f"http://127.0.0.1:{self.web_ports[worker_id]}"

    def web(self, method: str, path: str, worker_id: str | None = None, **kwargs: Any) -> httpx.Response:
        """Call a worker's web API with this run's token (any worker when ``worker_id`` is None)."""
        worker = worker_id or next(iter(self.web_ports))
        headers = {"Authorization": f"Bearer {self.config.web_token}"}
        return httpx.request(method, f"{self.web_url(worker)}{path}", headers=headers, timeout=30, **kwargs)

    def sandbox(self, method: str, path: str, json: Any = None) -> Any:
        """Call the sandbox's admin API."""
        response = httpx.request(method, f"{self.config.sandbox_url}/_sandbox/{path}", json=json, timeout=30)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


@contextlib.contextmanager
def moto_sqs() -> Iterator[str]:
    """A moto SQS server on a free local port (in this process); yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    (port,) = find_free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def local_kafka(data_dir: Path, port: int | None = None) -> Iterator[tuple[str, LocalBroker | None]]:
    """A Kafka broker for the run: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else one started from the cached jars.

    A broker already running in ``data_dir`` (``solicit kafka up``) is reused and left running.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external, None
        return
    if port is None:
        port = 9092 if port_is_free(9092) else find_free_ports(1)[0]
    broker = LocalBroker(data_dir=data_dir, port=port)
    report = broker.start(detach=True)
    try:
        yield report.bootstrap, broker
    finally:
        if not report.already_running:
            broker.stop()
