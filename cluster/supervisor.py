"""`python run.py cluster`: the engine (or, with `--market-shards N`, a balance process and N market shards), the
API and the WebSocket processes as children, watched together.

A child that exits on its own is started again after a backoff (an engine restart is safe: it replays
its journal). Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL after a grace period) and
returns 0; the children's output goes to this process's stdout/stderr.

Invariant: no process the supervisor started outlives it or its restart. Each child leads its own
process group (its Sanic worker processes included); when a child exits, or at stop, whatever is left
of its group is killed. On Linux each child also gets SIGTERM if the supervisor itself dies.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RUN_PY = Path(__file__).resolve().parent.parent / "run.py"
GRACE_SECONDS = 10.0
STABLE_SECONDS = 30.0
"""A child that ran this long before exiting is restarted after the shortest backoff."""


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RUN_PY), *self.argv], start_new_session=True, preexec_fn=_die_with_parent()
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def kill_group(self) -> None:
        """SIGKILL whatever is left of this child's process group (e.g. workers of a killed Sanic main)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to send the child SIGTERM when the supervisor dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def children_of(args: argparse.Namespace) -> list[Child]:
    """The engine (or balance and market shards), API and WebSocket children, each given the options that are
    its own (`openbell.options`). Market shards come first: they say in Redis how many there are."""
    from openbell.options import engine_argv, markets_argv

    common = ["--redis", args.redis, "--log-level", args.log_level]
    api_and_ws = ["--no-metrics"] if args.no_metrics else []
    shards = args.market_shards
    if shards > 0:
        data = Path(args.data_dir)
        engines = []
        for k in range(shards):
            argv = ["markets", *common, "--shard", str(k), "--shards", str(shards)]
            engines.append(Child(f"markets-{k}", [*argv, *markets_argv(args, str(data / f"markets-{k}"))]))
        engines.append(Child("balance", ["balance", *common, *engine_argv(args, str(data / "balance"))]))
    else:
        engines = [Child("engine", ["engine", *common, *engine_argv(args)])]
    access_log = ["--access-log"] if args.access_log else []
    api_and_ws += ["--proxies", str(args.proxies)]
    if args.real_ip_header:
        api_and_ws += ["--real-ip-header", args.real_ip_header]
    api = ["api", *common, *api_and_ws, "--host", args.host, "--port", str(args.api_port), "--workers", str(args.api_workers)]
    api += ["--reply-timeout", str(args.reply_timeout), *access_log]
    # The web page's WebSocket: by default the WS port on whatever host the browser loaded the page from.
    api += ["--public-ws-url", args.public_ws_url or f"ws://0.0.0.0:{args.ws_port}/ws"]
    ws = ["ws", *common, *api_and_ws, "--host", args.host, "--port", str(args.ws_port), "--workers", str(args.ws_workers)]
    for name in ("orders_per_key", "reads_per_key", "orders_per_address", "reads_per_address", "rate_burst_seconds"):
        api += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.dev:
        api.append("--dev")
        ws.append("--dev")
    children = [*engines, Child("api", api)]
    if args.ws_workers > 0:
        children.append(Child("ws", ws))
    return children


def run_cluster(args: argparse.Namespace) -> int:
    from openbell.metrics import process_ended
    from openbell.options import resolve_auth

    auth = resolve_auth(args, args.host, data_dir=args.data_dir, in_memory=args.in_memory)
    auth.announce(log)
    auth.export()  # the API children read the operator's token and the server secret from the environment

    children = children_of(args)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for child in children:
            if not stopping:
                child.start()
        ws = f", WebSocket streams on ws://{args.host}:{args.ws_port}/ws" if args.ws_workers > 0 else ""
        log.info("cluster: REST API on http://%s:%d%s", args.host, args.api_port, ws)
        while not stopping:
            now = time.monotonic()
            for child in children:
                process = child.process
                if process is not None and process.poll() is not None:
                    log.warning("%s exited with %s", child.name, process.returncode)
                    process_ended(process.pid)
                    child.kill_group()
                    stable = now - child.started_at > STABLE_SECONDS
                    child.restarts = 0 if stable else child.restarts + 1
                    child.next_start = now + min(0.5 * 2**child.restarts, 10.0)
                    child.process = None
                elif process is None and now >= child.next_start:
                    child.start()
            time.sleep(0.2)
    finally:
        stop_all(children)
    return 0


def _stop_rank(child: Child) -> int:
    """Front ends first, then the process that sends to the market shards, then the shards."""
    if child.name in ("engine", "balance"):
        return 1
    return 2 if child.name.startswith("markets-") else 0


def stop_all(children: list[Child]) -> None:
    """SIGTERM to every child (front ends first), then wait; SIGKILL what is still running after the grace.

    Then SIGKILL each child's process group, so that no worker process of a child outlives it.
    """
    for child in sorted(children, key=_stop_rank):
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", child.name)
            child.process.kill()
            child.process.wait(5)
        child.kill_group()
    log.info("cluster stopped")
