"""`python run.py engine|api|ws|cluster ...`: the processes of the Redis-fed deployment.

- `engine`: the actors and the relay (`openbell.cluster.relay`); no HTTP.
- `api`: the REST API on `RemoteEngine`, `--workers N` Sanic worker processes on one port.
- `ws`: the WebSocket streams on `RemoteEngine` + `RedisEventBus`, `--workers M` on one port.
- `cluster`: all of the above as child processes, watched and stopped together (`supervisor`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from functools import partial
from typing import Any

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _common(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--redis", default=env("OPENBELL_REDIS", DEFAULT_REDIS), help="Redis URL (default %(default)s)")
    parser.add_argument(
        "--log-level",
        default=env("OPENBELL_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )


def _engine_options(parser: argparse.ArgumentParser) -> None:
    from openbell.cli import DEFAULT_ASSETS, DEFAULT_MARKETS

    env = os.environ.get
    parser.add_argument(
        "--markets",
        default=env("OPENBELL_MARKETS", DEFAULT_MARKETS),
        help="SYMBOL:TICK:LOT[:MAKER_BPS:TAKER_BPS],... added at first start (default %(default)s)",
    )
    parser.add_argument("--assets", default=env("OPENBELL_ASSETS", DEFAULT_ASSETS), help="ASSET:DECIMALS,...")
    parser.add_argument(
        "--data-dir",
        default=env("OPENBELL_DATA_DIR", "./data"),
        help="the engine's journal and snapshots; a restarted engine continues from them (default ./data)",
    )
    parser.add_argument(
        "--in-memory", action="store_true", help="the engine keeps nothing on disk (a restart starts empty)"
    )
    parser.add_argument("--max-open-orders", type=int, default=1000, help="open orders allowed per user")
    parser.add_argument("--batch", type=int, default=256, help="commands read from Redis per XREADGROUP")
    parser.add_argument(
        "--trim-interval",
        type=float,
        default=5.0,
        help="seconds between trims of the journaled part of the command stream (default %(default)s)",
    )
    parser.add_argument("--switch-interval", type=float, default=0.005, help="Python thread switch interval (s)")


def _server_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help="port (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on the port (default 1)")
    parser.add_argument("--reply-timeout", type=float, default=5.0, help="seconds a request waits for the engine")


def _public_ws_url(parser: argparse.ArgumentParser, default: str) -> None:
    from openbell.http.web import check_public_ws_url

    parser.add_argument(
        "--public-ws-url",
        type=check_public_ws_url,
        default=os.environ.get("OPENBELL_PUBLIC_WS_URL"),
        help=f"the WebSocket URL the web page connects to, as a browser reaches it (default: {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python run.py", description="openbell over Redis: engine, API, WS processes")
    modes = parser.add_subparsers(dest="mode", required=True)
    engine = modes.add_parser("engine", help="the matching engine and its Redis relay")
    _common(engine)
    _engine_options(engine)
    api = modes.add_parser("api", help="REST API workers")
    _common(api)
    _server_options(api, 8000)
    _public_ws_url(api, "/ws on the page's own address")
    ws = modes.add_parser("ws", help="WebSocket workers")
    _common(ws)
    _server_options(ws, 8001)
    cluster = modes.add_parser("cluster", help="engine + API + WS processes, supervised")
    _common(cluster)
    _engine_options(cluster)
    cluster.add_argument("--host", default="127.0.0.1")
    cluster.add_argument("--api-port", type=int, default=8000)
    cluster.add_argument("--ws-port", type=int, default=8001)
    cluster.add_argument("--api-workers", type=int, default=2)
    cluster.add_argument("--ws-workers", type=int, default=1)
    cluster.add_argument("--reply-timeout", type=float, default=5.0)
    _public_ws_url(cluster, "--ws-port on the host the page was loaded from")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format=f"%(asctime)s %(levelname)s [{args.mode} %(process)d] %(name)s: %(message)s",
    )
    if args.mode == "engine":
        return run_engine(args)
    if args.mode == "api":
        return serve(args, partial(build_api_app, args.redis, args.reply_timeout, args.public_ws_url))
    if args.mode == "ws":
        return serve(args, partial(build_ws_app, args.redis))
    from openbell.cluster.supervisor import run_cluster

    return run_cluster(args)


# --------------------------------------------------------------------------- engine
def run_engine(args: argparse.Namespace) -> int:
    from openbell.cli import parse_markets
    from openbell.cluster.relay import Relay

    sys.setswitchinterval(args.switch_interval)
    relay = Relay(
        args.redis,
        parse_markets(args.markets, args.assets),
        data_dir=None if args.in_memory else args.data_dir,
        batch_size=args.batch,
        max_open_orders_per_user=args.max_open_orders,
        trim_interval=args.trim_interval,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await relay.run(stop)

    asyncio.run(main())
    return 0


# --------------------------------------------------------------------------- api / ws
def build_api_app(redis_url: str, reply_timeout: float, public_ws_url: str | None = None) -> Any:
    """One API worker's app (a factory: each Sanic worker process builds its own)."""
    from openbell.cluster.remote import RemoteEngine
    from openbell.http.app import create_app

    engine = RemoteEngine(redis_url, reply_timeout=reply_timeout)
    app = create_app(engine, name="openbell_api", websocket=False, public_ws_url=public_ws_url)  # type: ignore[arg-type]
    _manage(app, engine)
    return app


def build_ws_app(redis_url: str) -> Any:
    """One WebSocket worker's app: the streams on a Redis-fed bus, and /health."""
    from sanic import Sanic
    from sanic.response import json

    from openbell.cluster.redisbus import RedisEventBus
    from openbell.cluster.remote import RemoteEngine

    engine = RemoteEngine(redis_url, bus=RedisEventBus(redis_url))
    app = Sanic("openbell_ws", configure_logging=False)  # logging is configured once, in main
    app.ctx.engine = engine

    @app.get("/health")
    async def health(request: Any) -> Any:
        connected = engine.running and engine.bus is not None and engine.bus.connected
        return json({"status": "ok" if connected else "redis unavailable"}, status=200 if connected else 503)

    try:
        from openbell.ws.server import install_websocket
    except ImportError:
        logging.getLogger(__name__).error("openbell.ws.server is not available: no WebSocket streams")
    else:
        install_websocket(app, engine)
    _manage(app, engine)
    return app


def _manage(app: Any, engine: Any) -> None:
    async def start(app: Any) -> None:
        await engine.start()

    async def stop(app: Any) -> None:
        await engine.stop()

    app.register_listener(start, "before_server_start")
    app.register_listener(stop, "after_server_stop")


def serve(args: argparse.Namespace, factory: Any) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    options = {"host": args.host, "port": args.port, "access_log": False, "debug": False, "motd": False}
    if args.workers <= 1:
        factory().run(single_process=True, **options)
        return 0
    loader = AppLoader(factory=factory)
    app = loader.load()
    app.prepare(workers=args.workers, **options)
    Sanic.serve(primary=app, app_loader=loader)
    return 0
