"""The Kafka jars (fetched once from Maven Central into a per-version cache) and the Java toolchain that runs them.

Why Maven and not the release tarball: Maven Central is reachable where the Apache download mirrors may not be, and
``copy-dependencies`` on a tiny ``pom.xml`` (shipped next to this module) resolves the exact runtime closure.
That closure is about 57 jars, 46 MB. ``dependency:get`` would only fill ``~/.m2``, and ``dependency:copy`` skips
transitive dependencies.

Pitfalls handled here:

* An interrupted download leaves a half-filled ``libs/``. A marker file is written only after a complete copy, and
  a missing marker means the libs are wiped and fetched again. The marker holds a hash of the pom, so editing the
  pom (another log jar, say) also refetches.
* Two processes may start a broker at the same time (the CLI and a test run). An exclusive ``flock`` on the cache
  dir serialises the fetch, and the second process finds the marker and returns.
* Maven writes into the directory of the pom it runs, so the pom is copied into the cache dir first. The
  installed package may be read-only, and the source tree should stay clean.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from devstack.local_kafka.errors import JarDownloadFailed, JavaNotFound, MavenNotFound

KAFKA_VERSION = "3.9.1"
"""The Kafka release the pom pins (``kafka.version``); it names the cache directory."""

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
DOWNLOAD_TIMEOUT_S = 900.0
"""A cold ``~/.m2`` took 8 s on a fast link; the limit is for slow proxies, not a hung mvn."""

_MARKER = ".complete"
_KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"


def default_kafka_home() -> Path:
    """``~/.cache/solicit/kafka-<version>``: shared by every checkout and test run of this user."""
    return Path.home() / ".cache" / "solicit" / f"kafka-{KAFKA_VERSION}"


def find_java() -> str:
    """The ``java`` executable, found as Kafka's ``kafka-run-class.sh`` finds it: ``$JAVA_HOME`` first, then PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise JavaNotFound()
    return found


def find_maven() -> str:
    """The ``mvn`` executable on PATH."""
    found = shutil.which("mvn")
    if found is None:
        raise MavenNotFound()
    return found


def _pom_bytes() -> bytes:
    return resources.files("devstack.local_kafka").joinpath("pom.xml").read_bytes()


@dataclass(frozen=True)
class JarFetch:
    """What :meth:`JarCache.ensure` did: where the jars are, and whether (and how long) it downloaded."""

    libs: Path
    downloaded: bool
    seconds: float


@dataclass(frozen=True)
class JarCache:
    """The cache directory of one Kafka version: ``pom.xml``, ``libs/*.jar`` and the completeness marker."""

    home: Path

    @classmethod
    def at(cls, home: Path | None) -> JarCache:
        """The cache at ``home``, or at :func:`default_kafka_home` when None (``Settings.kafka_home`` unset)."""
        return cls((home or default_kafka_home()).expanduser().resolve())

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def marker(self) -> Path:
        """Written after a complete copy. Its mtime changes only when the jars were downloaded again."""
        return self.libs / _MARKER

    @property
    def classpath(self) -> str:
        """The ``-cp`` value: a JVM wildcard, expanded by java itself, not by a shell."""
        return str(self.libs / "*")

    def is_complete(self) -> bool:
        """True when a full copy for the current pom is present."""
        try:
            recorded = self.marker.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return False
        return recorded == _pom_digest() and (self.libs / _KAFKA_JAR).is_file()

    def ensure(self, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> JarFetch:
        """Make the jars present, downloading them only when the cache is missing or incomplete."""
        started = time.monotonic()
        if self.is_complete():
            return JarFetch(self.libs, downloaded=False, seconds=0.0)
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Another process may have finished the download while this one waited for the lock.
            if self.is_complete():
                return JarFetch(self.libs, downloaded=False, seconds=time.monotonic() - started)
            self._download(timeout=timeout)
        return JarFetch(self.libs, downloaded=True, seconds=time.monotonic() - started)

    def _download(self, *, timeout: float) -> None:
        find_java()
        mvn = find_maven()
        shutil.rmtree(self.libs, ignore_errors=True)
        pom = self.home / "pom.xml"
        pom.write_bytes(_pom_bytes())
        command = [
            mvn, "-B", "-q", "-f", str(pom),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={self.libs}",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command, cwd=self.home, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise JarDownloadFailed(
                f"no result after {timeout:.0f} s", output_tail=_tail(_text(exc.stdout) + _text(exc.stderr))
            ) from None
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise JarDownloadFailed(f"mvn exited with {result.returncode}", output_tail=_tail(output))
        if not (self.libs / _KAFKA_JAR).is_file():
            raise JarDownloadFailed(f"mvn succeeded but {_KAFKA_JAR} is missing", output_tail=_tail(output))
        self.marker.write_text(_pom_digest() + "\n", encoding="ascii")


def _pom_digest() -> str:
    return hashlib.sha256(_pom_bytes()).hexdigest()


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"
