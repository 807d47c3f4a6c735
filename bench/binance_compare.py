"""Orders through the Binance API (`POST /api/v3/order`, form bodies, the user in `X-MBX-APIKEY`) against the
same orders through `/api/v1` (JSON), on one server in one run.

    .venv/bin/python -m bench.binance_compare [--signed] [--runs 3] [--duration 5] [--connections 32]
        [--orders 200000] [--no-cancels]

Starts `python run.py --dev` (fresh data directory, `--max-open-orders 100000`): neither API signs there, so the
comparison is of the two dialects' parsing and rendering on the same engine. With `--signed` the server
authenticates (an operator token and server secret made for the run; rate limits on but too high to refuse,
`bench.http_load.NO_LIMITS`), every user gets a key through the operator's route before the measured phases,
and every order and cancel is signed with its user's key as the clients send them: v1 with `timestamp` and
`signature` in the query over the JSON body, v3 as ccxt does, the form body `timestamp=...&...&recvWindow=10000`
with `signature` last in the body (cancels signed in the query). That is the issue's target: signed v3 orders
at least 0.9 of the signed v1 rate. It credits every user of the stream
(`bench.http_load.prefund`), then per run measures v1 and v3 at saturation one after the other (their order
alternating run by run), each on its own seeded stream of the same shape (`bench.http_load`'s workload: limit
orders around a drifting mid, a tenth cancels). Reports per API the median orders per second and requests per
second of server CPU (the steadier figure on a shared machine), and v3 / v1 of both. Every wait is bounded and
the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.http_load import (
    JSON_HEAD,
    NO_LIMITS,
    PLACE,
    LoadState,
    RawClient,
    Result,
    Server,
    build_workload,
    free_port,
    install_loop,
    make_keys,
    prefund,
    run_load,
    show,
)

KEY_HEADER = b"X-MBX-APIKEY: "


class SignedBinanceClient(RawClient):
    """The v3 stream's requests signed as ccxt signs them. The stream names its user in `X-MBX-APIKEY` (what
    `--dev` reads); here that user's key takes its place, a POST's form body gets a fresh `timestamp` first and
    its `signature` last, and a DELETE's query is signed (`timestamp` and `signature` appended)."""

    async def send(
        self, conn: Any, method: bytes, path: bytes, body: bytes, head: bytes = JSON_HEAD, user: str = ""
    ) -> tuple[int, bytes]:
        assert self.signers is not None
        before, _, named = head.rpartition(KEY_HEADER)
        signer = self.signers[named[:-2].decode()]
        head = before + KEY_HEADER + signer.api_key.encode() + b"\r\n"
        if body:
            rest = body[body.index(b"&") :]  # the stream's form without its leading timestamp
            form = b"timestamp=%d%s" % (signer.timestamp_for(rest), rest)
            body = form + b"&signature=" + signer.sign(form).encode()
        else:
            route, _, query = path.partition(b"?")
            query = query.rpartition(b"&timestamp=")[0]
            path = route + b"?" + signer.signed_query(query)
        return await conn.request(method, self.prefix + path, body, head)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--no-cancels", action="store_true", help="orders only (drop the stream's cancels)")
    parser.add_argument("--signed", action="store_true", help="authentication on: every request signed (see above)")
    args = parser.parse_args(argv)
    loop_name = install_loop()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; client on {loop_name}", flush=True)  # fmt: skip
    workloads = {
        "v1": build_workload(args.orders, 1, args.users, "TATA_INR"),
        "v3": build_workload(args.orders, 2, args.users, "TATA_INR", api="v3"),
    }
    if args.no_cancels:
        for workload in workloads.values():
            workload.items = [item for item in workload.items if item[0] == PLACE]
    with tempfile.TemporaryDirectory(prefix="openbell-binance-bench-") as tmp:
        port = free_port()
        argv_server = [sys.executable, "run.py", "--port", str(port), "--log-level", "warning", "--max-open-orders", "100000",
                       "--data-dir", str(Path(tmp) / "data")]  # fmt: skip
        token = secrets.token_urlsafe(24)
        env = {"OPENBELL_ADMIN_TOKEN": token, "OPENBELL_KEY_SECRET": secrets.token_hex(32)}
        argv_server += NO_LIMITS if args.signed else ["--dev", *NO_LIMITS]
        server = Server("exchange", argv_server, port, Path(tmp), None, env)
        try:
            server.wait_ready()
            results: dict[str, list[Result]] = {"v1": [], "v3": []}
            signers = make_keys(server.url, workloads["v1"].users, token) if args.signed else None
            print(f"mode: {'signed (authentication on)' if args.signed else 'unsigned (--dev)'}", flush=True)

            async def go() -> None:
                v1 = RawClient("127.0.0.1", port, "/api/v1", signers, token)
                v3_kind = SignedBinanceClient if signers is not None else RawClient
                v3 = v3_kind("127.0.0.1", port, "/api/v3", signers, token)
                funded = await prefund(v1, workloads["v1"], args.connections, 10.0)
                print(f"prefund: {funded}", flush=True)
                states = {"v1": LoadState(), "v3": LoadState()}
                for run in range(args.runs):
                    for api in ("v1", "v3") if run % 2 == 0 else ("v3", "v1"):
                        result = await run_load(
                            v1 if api == "v1" else v3,
                            workloads[api],
                            connections=args.connections,
                            duration=args.duration,
                            warmup=args.warmup,
                            rate=None,
                            timeout=10.0,
                            label=f"run {run + 1} {api}",
                            state=states[api],
                            server_pid=server.process.pid,
                        )
                        print(show(result), flush=True)
                        results[api].append(result)

            asyncio.run(go())
        finally:
            server.stop()
    medians = {}
    for api, found in results.items():
        rate = statistics.median(r.orders_per_second for r in found)
        per_cpu = statistics.median(r.requests_per_server_cpu_second or 0.0 for r in found)
        medians[api] = (rate, per_cpu)
        print(f"{api}: median {rate:,.0f} orders/s, {per_cpu:,.0f} requests per server CPU-second")
    (v1_rate, v1_cpu), (v3_rate, v3_cpu) = medians["v1"], medians["v3"]
    print(
        f"v3 / v1: {v3_rate / v1_rate:.2f} of the order rate, {v3_cpu / v1_cpu:.2f} of requests per server CPU-second"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
