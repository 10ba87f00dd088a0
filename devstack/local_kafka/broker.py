"""One local Kafka broker process: format, start, wait until it answers, report, stop.

Used by ``solicit kafka up|down|status`` (detached, survives the CLI) and by the test fixture (attached, stopped at
session end). Everything a run needs lives in one data directory:

* ``server.properties``: rendered per start (see config.py)
* ``log4j.properties``: copied from the package
* ``cluster.id``: so a re-start reuses the formatted storage
* ``kafka-logs/``: ``log.dirs``
* ``broker.log``: stdout+stderr; the previous run's log is kept as ``broker.log.1``
* ``broker.pid``

Pitfalls handled here:

* Readiness is a real Metadata request through aiokafka that must list the broker, polled until a deadline. There
  is no blind sleep, and we don't rely on a log line. A broker that exits or misses the deadline is stopped, and
  the error carries the log tail.
* Ports are checked by binding them before starting. The JVM would fail anyway, but only after a few seconds and
  with a stack trace that never names the port.
* A pid file may be stale, and pids get reused. A pid counts as our broker only while ``/proc/<pid>/cmdline``
  runs ``kafka.Kafka`` with this data dir's ``server.properties`` and the process is not a zombie. A detached
  broker's parent is PID 1, which may reap late, so an exited broker can linger as a zombie for a while.
* Stop sends SIGTERM (``kafka.Kafka`` then shuts down cleanly, well under a second for one node) and waits. It
  falls back to SIGKILL after the deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from devstack.local_kafka.config import (
    DEFAULT_HOST,
    BrokerConfig,
    SaslSslListener,
    new_cluster_id,
    read_listener_port,
    render_server_properties,
)
from devstack.local_kafka.errors import BrokerNotReady, PortInUse, StorageFormatFailed
from devstack.local_kafka.jars import JarCache, JarFetch, find_java
from devstack.local_kafka.probes import find_free_ports, metadata_answers, port_is_free

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
_POLL_INTERVAL_S = 0.1
_FORMAT_TIMEOUT_S = 120.0

BROKER_JVM_OPTIONS: tuple[str, ...] = (
    # bin/kafka-server-start.sh defaults to a 1 GB heap; one dev/test node needs far less.
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    # C1 only: a faster start for less peak throughput, the right trade for dev and tests.
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
_HAS_PROCFS = Path("/proc/self/stat").exists()
_TOOL_JVM_OPTIONS: tuple[str, ...] = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")


@dataclass(frozen=True)
class StartReport:
    """What :meth:`LocalBroker.start` did and how long each step took."""

    bootstrap: str
    pid: int
    already_running: bool
    jars: JarFetch | None = None
    format_seconds: float = 0.0
    ready_seconds: float = 0.0
    """From launching ``kafka.Kafka`` until a metadata request listed the broker."""
    sasl_ssl_bootstrap: str | None = None
    """``host:port`` of the SASL_SSL listener, when the broker was started with one."""

    @property
    def start_seconds(self) -> float:
        """Format plus launch-until-ready: the cost of a start once the jars are cached."""
        return self.format_seconds + self.ready_seconds


@dataclass(frozen=True)
class BrokerStatus:
    """The state of the broker of one data directory."""

    data_dir: Path
    running: bool
    pid: int | None
    port: int | None
    answers_metadata: bool


class LocalBroker:
    """The single-node KRaft broker whose state lives in ``data_dir``.

    ``port`` is the client (PLAINTEXT) port. ``controller_port`` defaults to ``port + 1``, or to a free port
    when that one is taken. ``kafka_home`` is the jar cache (``Settings.kafka_home``); None means
    ``~/.cache/solicit/kafka-<version>``. ``sasl_ssl`` adds a SASL_SSL listener (config.py); its SCRAM users are
    created when the data dir is formatted, so give it to the first start of a data dir.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int,
        controller_port: int | None = None,
        kafka_home: Path | None = None,
        host: str = DEFAULT_HOST,
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.port = port
        self.controller_port = controller_port
        self.host = host
        self.sasl_ssl = sasl_ssl
        self.jars = JarCache.at(kafka_home)
        self._process: subprocess.Popen[bytes] | None = None

    # --- files of the data directory ---------------------------------------------------------------------
    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "kafka-logs"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self, *, detach: bool = False, ready_timeout: float = READY_TIMEOUT_S) -> StartReport:
        """Start the broker and return once it answers metadata requests.

        Already running (for this data dir): returns at once with ``already_running=True`` and the port it
        actually listens on. ``detach=True`` puts the broker in its own session, so it outlives this process
        and the terminal's Ctrl-C. Otherwise it shares our process group, and the caller must :meth:`stop` it.
        """
        pid = self.running_pid()
        if pid is not None:
            port = self._rendered_port() or self.port
            return StartReport(bootstrap=f"{self.host}:{port}", pid=pid, already_running=True)

        java = find_java()
        if not port_is_free(self.port, self.host):
            raise PortInUse(self.port, role="client")
        if self.sasl_ssl is not None and not port_is_free(self.sasl_ssl.port, self.host):
            raise PortInUse(self.sasl_ssl.port, role="SASL_SSL")
        controller_port = self._choose_controller_port()
        jars = self.jars.ensure()

        config = BrokerConfig(
            port=self.port,
            controller_port=controller_port,
            log_dir=self.storage_dir,
            host=self.host,
            sasl_ssl=self.sasl_ssl,
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(render_server_properties(config), encoding="utf-8")
        log4j = self.data_dir / "log4j.properties"
        log4j.write_bytes(resources.files("devstack.local_kafka").joinpath("log4j.properties").read_bytes())

        began = time.monotonic()
        self._format(java, log4j)
        formatted = time.monotonic()
        self._launch(java, log4j, detach=detach)
        try:
            failure = self._wait_ready(config.bootstrap, timeout=ready_timeout)
        except BaseException:
            # Ctrl-C (or any bug) while waiting: never leave a half-started broker behind.
            self.stop(timeout=5.0)
            raise
        if failure is not None:
            self.stop(timeout=5.0)
            raise BrokerNotReady(failure, log_path=self.log_path, log_tail=self.log_tail())
        ready = time.monotonic()
        assert self._process is not None
        return StartReport(
            bootstrap=config.bootstrap,
            pid=self._process.pid,
            already_running=False,
            jars=jars,
            format_seconds=formatted - began,
            ready_seconds=ready - formatted,
            sasl_ssl_bootstrap=config.sasl_ssl_bootstrap,
        )

    def stop(self, *, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker: SIGTERM, wait up to ``timeout``, then SIGKILL. False when it was not running."""
        pid = self.running_pid()
        if pid is None:
            self._forget()
            return False
        try:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        except ProcessLookupError:
            pass  # exited between the check and the signal
        self._forget()
        return True

    def status(self) -> BrokerStatus:
        """Running or not, with pid, client port and whether it answers a metadata request now."""
        pid = self.running_pid()
        port = self._rendered_port() if pid is not None else None
        answers = port is not None and metadata_answers(f"{self.host}:{port}")
        return BrokerStatus(
            data_dir=self.data_dir, running=pid is not None, pid=pid, port=port, answers_metadata=answers
        )

    def running_pid(self) -> int | None:
        """The pid of this data dir's broker while it runs, else None (stale pid files are ignored)."""
        if self._process is not None and self._process.poll() is None:
            return self._process.pid
        try:
            pid = int(self.pid_path.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_broker_process(pid, self.server_properties) else None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of this run's broker log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no broker log yet)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(the broker log is empty)"

    # --- steps -------------------------------------------------------------------------------------------
    def _choose_controller_port(self) -> int:
        if self.controller_port is not None:
            if not port_is_free(self.controller_port, self.host):
                raise PortInUse(self.controller_port, role="controller")
            return self.controller_port
        preferred = self.port + 1
        if preferred < 65536 and port_is_free(preferred, self.host):
            return preferred
        return find_free_ports(1, self.host)[0]

    def _cluster_id(self) -> str:
        """The id this data dir was formatted with, so a re-start passes ``--ignore-formatted`` cleanly."""
        path = self.data_dir / "cluster.id"
        if path.is_file():
            return path.read_text(encoding="ascii").strip()
        cluster_id = _formatted_cluster_id(self.storage_dir) or new_cluster_id()
        path.write_text(cluster_id + "\n", encoding="ascii")
        return cluster_id

    def _format(self, java: str, log4j: Path) -> None:
        command = [
            java, *_TOOL_JVM_OPTIONS, f"-Dlog4j.configuration=file:{log4j}", "-cp", self.jars.classpath,
            "kafka.tools.StorageTool", "format", "-t", self._cluster_id(), "-c", str(self.server_properties),
            "--ignore-formatted", *(self.sasl_ssl.scram_arguments() if self.sasl_ssl is not None else []),
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, cwd=self.data_dir, capture_output=True, text=True, timeout=_FORMAT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise StorageFormatFailed(
                self.storage_dir, output_tail=f"(no result after {_FORMAT_TIMEOUT_S:.0f} s)"
            ) from None
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise StorageFormatFailed(self.storage_dir, output_tail="\n".join(output[-20:]))

    def _launch(self, java: str, log4j: Path, *, detach: bool) -> None:
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name("broker.log.1"))
        command = [
            java, *BROKER_JVM_OPTIONS, f"-Dlog4j.configuration=file:{log4j}", "-cp", self.jars.classpath,
            "kafka.Kafka", str(self.server_properties),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            # stdin/stdout must not be ours: a caller capturing our output would otherwise wait for the broker.
            self._process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        self.pid_path.write_text(f"{self._process.pid}\n", encoding="ascii")

    def _wait_ready(self, bootstrap: str, *, timeout: float) -> str | None:
        """None once the broker answers; otherwise why it never will (exited, or the deadline passed)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                return f"the broker process exited with code {code}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"no answer to a metadata request on {bootstrap} within {timeout:g} s"
            if metadata_answers(bootstrap, timeout=min(5.0, remaining)):
                return None
            time.sleep(_POLL_INTERVAL_S)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _forget(self) -> None:
        if self._process is not None:
            self._process.poll()  # reap, so no zombie and no ResourceWarning
            self._process = None
        self.pid_path.unlink(missing_ok=True)

    def _rendered_port(self) -> int | None:
        try:
            return read_listener_port(self.server_properties.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None


def _formatted_cluster_id(storage_dir: Path) -> str | None:
    """The ``cluster.id`` in an already formatted storage dir (kept even if our ``cluster.id`` file was lost)."""
    try:
        text = (storage_dir / "meta.properties").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id" and value.strip():
            return value.strip()
    return None


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited child its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _HAS_PROCFS:
        return True  # macOS: existence is all we know
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False  # exited since the signal check
    # The command name in parentheses may contain spaces; the state letter follows the last ')'.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_broker_process(pid: int, server_properties: Path) -> bool:
    """True when ``pid`` is a live ``kafka.Kafka`` started with this ``server.properties`` (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    if not _HAS_PROCFS:
        return True  # macOS: trust the pid file
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in argv and str(server_properties).encode() in argv
