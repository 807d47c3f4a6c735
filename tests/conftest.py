"""Shared fixtures: real servers on free ports, bound to 127.0.0.1 only, stopped in teardown."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from openbell.client import OperatorAuth, Signer, sign_request
from openbell.edge.identity import USER_ID

ROOT = pathlib.Path(__file__).resolve().parent.parent

ADMIN_TOKEN = "test-operator-" + secrets.token_hex(8)
"""The operator's token of every server the tests start (through OPENBELL_ADMIN_TOKEN)."""
# Every server a test starts inherits these; nothing is written to the home directory.
os.environ["OPENBELL_ADMIN_TOKEN"] = ADMIN_TOKEN
os.environ["OPENBELL_KEY_SECRET"] = "test-server-secret-" + secrets.token_hex(16)

ADMIN_PATHS = ("/api/v1/admin/",)
ADMIN_POSTS = ("/api/v1/onramp", "/api/v1/markets")


def create_key(api: str, user_id: str, permissions: tuple[str, ...] = ("read", "trade")) -> dict[str, Any]:
    """A new API key for `user_id` through the operator's route of the server at `api` (.../api/v1)."""
    request = urllib.request.Request(
        f"{api}/admin/keys",
        data=json.dumps({"user_id": user_id, "permissions": list(permissions)}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created: dict[str, Any] = json.loads(response.read())
    return created


_signers: dict[tuple[str, str], Signer] = {}


def signer_for(api: str, user_id: str) -> Signer:
    """A signer for `user_id` on the server at `api`, with a key (read and trade) made on first use."""
    signer = _signers.get((api, user_id))
    if signer is None:
        key = create_key(api, user_id)
        signer = _signers[(api, user_id)] = Signer(key["apiKey"], key["secret"])
    return signer


class AsNamedUser(httpx.Auth):
    """Signs each request as the user it names (`user_id` in its query or JSON body), with a key made for that
    user on first use; sends the operator's token on operator routes; leaves other requests unsigned. So a
    test written against dev mode runs against an authenticating server by adding `auth=AsNamedUser(api)`
    (`server.auth` for a `RunningServer`)."""

    requires_request_body = True

    def __init__(self, api: str) -> None:
        self.api = api.rstrip("/")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        path = request.url.path
        if path.startswith(ADMIN_PATHS) or (request.method == "POST" and path.rstrip("/") in ADMIN_POSTS):
            request.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
            yield request
            return
        user = request.url.params.get("user_id")
        if user is None and request.content and request.headers.get("content-type") == "application/json":
            try:
                body = json.loads(request.content)
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("user_id"), str):
                user = body["user_id"]
        if user is not None and USER_ID.match(user):
            sign_request(request, signer_for(self.api, user))
        yield request


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

    def signer(self, user_id: str) -> Signer:
        """A signer for `user_id`, with a key (read and trade) made on first use."""
        return signer_for(self.api, user_id)

    @property
    def auth(self) -> AsNamedUser:
        """httpx auth: signs as the user each request names; the operator's token on operator routes."""
        return AsNamedUser(self.api)

    @property
    def admin(self) -> OperatorAuth:
        return OperatorAuth(ADMIN_TOKEN)

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


@pytest.fixture(scope="module")
def client(exchange: RunningServer) -> Iterator[httpx.Client]:
    """`exchange`'s REST API (`.../api/v1`), signing as the user each request names (operator routes: the token)."""
    with httpx.Client(base_url=exchange.api, timeout=10, auth=exchange.auth) as http:
        yield http
