"""``solicit sandbox`` as a user runs it: a real process, flags, a sellers file, Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.cli import main

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(base: str, process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sandbox exited early: {process.communicate()}")
        try:
            if httpx.get(f"{base}/_sandbox/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("sandbox did not answer in time")


def test_solicit_sandbox_serves_the_configured_sellers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    sellers = tmp_path / "sellers.json"
    sellers.write_text(json.dumps([{"seller_id": "CLI1", "refresh_token": "Atzr|cli-one", "rate": 2.0}]))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streams.cli", "sandbox", "--port", str(port), "--sellers", str(sellers)]
    command += ["--client-id", "cli-id", "--client-secret", "cli-secret", "--token-lifetime", "120", "--seed", "1"]
    # Started with SIGINT ignored, as a background job of a non-interactive shell (e.g. CI) would be: the
    # sandbox must still stop on Ctrl-C.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    token: dict[str, Any] = {}
    try:
        wait_until_up(base, process)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": "Atzr|cli-one",
            "client_id": "cli-id",
            "client_secret": "cli-secret",
        }
        token = httpx.post(f"{base}/auth/o2/token", data=form).json()
        assert token["expires_in"] == 120
        answer = httpx.get(
            f"{base}/solicitations/v1/orders/111-1111111-1111111",
            params={"marketplaceIds": "ATVPDKIKX0DER"},
            headers={"x-amz-access-token": token["access_token"]},
        )
        assert answer.status_code == 404
        assert answer.headers["x-amzn-RateLimit-Limit"] == "2.0"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail("solicit sandbox did not stop within 20 s of SIGINT")
    assert process.returncode == 0, stderr
    assert f"SOLICIT_SPAPI__ENDPOINT={base}" in stdout
    assert f"SOLICIT_SPAPI__LWA_ENDPOINT={base}/auth/o2/token" in stdout
    for secret in ("Atzr|cli-one", "cli-secret", token.get("access_token", "Atza|")):
        assert secret not in stdout + stderr


def test_invalid_sellers_file_is_reported_without_its_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sellers = tmp_path / "sellers.json"
    sellers.write_text(json.dumps([{"seller_id": "", "refresh_token": "Atzr|SECRET-IN-FILE"}]))
    assert main(["sandbox", "--port", str(free_port()), "--sellers", str(sellers)]) == 1
    err = capsys.readouterr().err
    assert "seller_id" in err
    assert "SECRET-IN-FILE" not in err


def test_busy_port_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["sandbox", "--port", str(port)]) == 1
    assert "in use" in capsys.readouterr().err
