"""Errors of the local Kafka broker tooling, named for what the user does next.

Every message says what went wrong and what to do about it: the CLI prints ``str(error)`` as is, and the test
fixture fails the run with it. None of these is retried automatically. Each one needs a person (install a tool,
free a port, read a log).

* LocalKafkaError
  + ToolMissing: install the tool, or put it on PATH
    - JavaNotFound
    - MavenNotFound
  + JarDownloadFailed: fix the network or Maven setup, then run again (``output_tail`` has mvn's output)
  + PortInUse: stop whatever listens there, or choose another port (``port``)
  + StorageFormatFailed: usually a data dir formatted for another cluster; delete it (``output_tail``)
  + BrokerNotReady: read the broker log (``log_path``, ``log_tail``)
"""

from __future__ import annotations

from pathlib import Path


class LocalKafkaError(Exception):
    """Root of every error of the local broker tooling; ``str()`` is a complete message for a person."""


class ToolMissing(LocalKafkaError):
    """A program the broker needs is not installed (or not on PATH)."""


class JavaNotFound(ToolMissing):
    """No ``java`` executable: the broker and Maven both need a Java runtime."""

    def __init__(self) -> None:
        super().__init__(
            "Java was not found: set JAVA_HOME or put `java` on PATH. The local Kafka broker needs a Java 17 "
            "runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`)."
        )


class MavenNotFound(ToolMissing):
    """No ``mvn`` executable, and the Kafka jars are not cached yet."""

    def __init__(self) -> None:
        super().__init__(
            "Maven (`mvn`) was not found on PATH. It is needed once, to download the Kafka jars from Maven "
            "Central (Debian/Ubuntu: `apt-get install maven`)."
        )


class JarDownloadFailed(LocalKafkaError):
    """``mvn copy-dependencies`` failed or timed out; nothing was marked complete, so the next run retries."""

    def __init__(self, reason: str, *, output_tail: str) -> None:
        self.output_tail = output_tail
        super().__init__(
            f"Downloading the Kafka jars with Maven failed ({reason}). Check that Maven Central is reachable "
            f"(proxy settings in ~/.m2/settings.xml), then run the command again.\n"
            f"--- last lines of mvn output ---\n{output_tail}"
        )


class PortInUse(LocalKafkaError):
    """A port the broker must listen on is taken by another process."""

    def __init__(self, port: int, *, role: str = "client") -> None:
        self.port = port
        super().__init__(
            f"Port {port} on 127.0.0.1 (Kafka {role} listener) is already in use. Stop the process that "
            f"listens there (`ss -ltnp 'sport = :{port}'` shows it) or choose another port with --port."
        )


class StorageFormatFailed(LocalKafkaError):
    """``kafka.tools.StorageTool format`` refused the data directory."""

    def __init__(self, data_dir: Path, *, output_tail: str) -> None:
        self.data_dir = data_dir
        self.output_tail = output_tail
        super().__init__(
            f"Formatting the Kafka storage in {data_dir} failed. If the directory was formatted for another "
            f"cluster, delete it (its topics are lost) and start again.\n"
            f"--- last lines of StorageTool output ---\n{output_tail}"
        )


class BrokerNotReady(LocalKafkaError):
    """The broker exited, or did not answer a metadata request before the deadline."""

    def __init__(self, reason: str, *, log_path: Path, log_tail: str) -> None:
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(
            f"The local Kafka broker did not become ready: {reason}. The full log is {log_path}.\n"
            f"--- last lines of the broker log ---\n{log_tail}"
        )
