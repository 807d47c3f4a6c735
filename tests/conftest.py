"""Shared fixtures: real servers on free ports, bound to 127.0.0.1 only, stopped in teardown."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_inspect(data_dir: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """`python run.py inspect --data-dir DATA_DIR`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "run.py", "inspect", "--data-dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def engines() -> Iterator[list[Any]]:
    """In-process engines a test started; stopped in teardown (a no-op for ones already stopped)."""
    started: list[Any] = []
    yield started
    for engine in started:
        engine.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: pathlib.Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def start_server(tmp_dir: pathlib.Path, *args: str, ready_timeout: float = 30.0) -> RunningServer:
    """Start `python run.py` on a free port and wait until /api/v1/health answers."""
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    log_file = log_path.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if "--data-dir" not in args and "--in-memory" not in args:
        args = (*args, "--data-dir", str(tmp_dir / f"data-{port}"))
    process = subprocess.Popen(
        [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *args],
        cwd=ROOT,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.api}/health", timeout=1) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not become ready in {ready_timeout}s:\n{server.log()}")


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The embedded exchange (`python run.py`) with its default market TATA_INR, one per test module."""
    server = start_server(tmp_path_factory.mktemp("exchange"))
    yield server
    code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log()}"
