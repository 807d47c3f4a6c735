"""The processes of the Redis-fed deployment (`python run.py engine|balance|markets|api|ws|cluster`), given their
parsed options (`openbell.options`):

- `engine`: the engine (journal, snapshots, history database: the same options as the embedded mode) and
  its relay (`openbell.cluster.relay`); no HTTP.
- `balance`: the engine's balance actor with every market matched by a market shard
  (`openbell.cluster.balance`), and its relay (`openbell.cluster.balance_relay`); no HTTP.
- `markets`: one market shard's markets (`openbell.cluster.shard`) and its relay
  (`openbell.cluster.shard_relay`); no HTTP.
- `api`: the REST API on `RemoteEngine`, `--workers N` Sanic worker processes on one port.
- `ws`: the WebSocket streams on `RemoteEngine` + `RedisEventBus`, `--workers M` on one port.
- `cluster`: all of the above as child processes, watched and stopped together (`openbell.cluster.supervisor`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

log = logging.getLogger("openbell")


def run(mode: str, args: argparse.Namespace) -> int:
    if mode == "engine":
        return run_engine(args)
    if mode == "balance":
        return run_balance(args)
    if mode == "markets":
        return run_markets(args)
    if mode == "api":
        from openbell.options import resolve_auth

        auth = resolve_auth(args, args.host, data_dir=None, in_memory=False)
        auth.announce(log)
        auth.export()  # the worker processes Sanic starts share the token and secret
        factory = partial(
            build_api_app, args.redis, args.reply_timeout, args.public_ws_url, auth, args.auth_redis or args.redis
        )
        return serve(args, factory, "REST API (/api/v1) and web page (/)")
    if mode == "ws":
        from openbell.edge.credentials import is_loopback
        from openbell.options import OptionError

        if args.dev and not is_loopback(args.host):
            raise OptionError(f"--dev turns authentication off and is refused on {args.host}: bind 127.0.0.1")
        secret = None
        if not args.dev:
            secret = _existing_key_secret(args.key_secret_file)
        return serve(args, partial(build_ws_app, args.redis, args.dev, secret), "WebSocket streams (ws://.../ws)")
    from openbell.cluster.supervisor import run_cluster

    return run_cluster(args)


# --------------------------------------------------------------------------- engine
def run_engine(args: argparse.Namespace) -> int:
    from openbell.cli import start_engine
    from openbell.cluster.relay import Relay
    from openbell.options import parse_markets

    specs = parse_markets(args.markets, args.assets)
    sys.setswitchinterval(args.switch_interval)
    engine = start_engine(args, [])  # recovered from its journal; start-up failures end here, in one line
    relay = Relay(
        args.redis,
        engine,
        specs,
        batch_size=args.batch or 256,
        trim_interval=args.trim_interval,
        listeners_interval=_listeners_interval(),
    )
    _run_until_signal(relay.run)
    return 0


def run_balance(args: argparse.Namespace) -> int:
    from openbell.cli import start_engine
    from openbell.cluster.balance import ShardMap
    from openbell.cluster.balance_relay import BalanceRelay
    from openbell.options import parse_markets

    specs = parse_markets(args.markets, args.assets)
    sys.setswitchinterval(args.switch_interval)
    shard_map = ShardMap.load(args.redis)
    log.info("%d market shards; markets assigned: %s", shard_map.count, _assigned(shard_map))
    engine = start_engine(args, [], shard_map=shard_map)
    relay = BalanceRelay(
        args.redis,
        engine,
        specs,
        batch_size=args.batch or 256,
        trim_interval=args.trim_interval,
        listeners_interval=_listeners_interval(),
    )
    _run_until_signal(relay.run)
    return 0


def _existing_key_secret(secret_file: str | None) -> bytes:
    """The API processes' server secret, for a WebSocket process: from OPENBELL_KEY_SECRET or an existing file.
    Never made here: a secret of its own would refuse every signature of the WebSocket API (-1022)."""
    from openbell.edge.credentials import KEY_SECRET_ENV, CredentialError, default_key_secret_file, key_secret
    from openbell.options import OptionError

    path = Path(secret_file) if secret_file else default_key_secret_file()
    if not os.environ.get(KEY_SECRET_ENV, "").strip() and not path.exists():
        raise OptionError(
            f"no server secret: set {KEY_SECRET_ENV} or --key-secret-file to the API processes' secret ({path} "
            "does not exist); the WebSocket API checks signatures with it"
        )
    try:
        secret, _ = key_secret(secret_file, False)
    except CredentialError as error:
        raise OptionError(str(error)) from None
    return secret


def _listeners_interval() -> float:
    """Seconds between the relay's checks of whether any process still reads events (it stops publishing them
    when none does; a WebSocket process that starts reading says so at once)."""
    from openbell.cluster.relay import LISTENERS_INTERVAL

    return float(os.environ.get("OPENBELL_EVENT_READERS_CHECK_SECONDS", LISTENERS_INTERVAL))


def _assigned(shard_map: Any) -> str:
    return "; ".join(f"{k}: {', '.join(shard_map.markets_of(k)) or '-'}" for k in range(shard_map.count))


def run_markets(args: argparse.Namespace) -> int:
    from openbell.actors.engine import tune_garbage_collector
    from openbell.cli import StartupFailure
    from openbell.cluster.shard import MarketShard
    from openbell.cluster.shard_relay import ShardCountMismatch, ShardRelay, register_shard_count
    from openbell.durability.split import ShardPersistence
    from openbell.options import make_history, make_persistence

    if not 0 <= args.shard < args.shards:
        raise StartupFailure(f"--shard must be from 0 to {args.shards - 1} (--shards {args.shards})")
    sys.setswitchinterval(args.switch_interval)
    tune_garbage_collector()
    try:
        register_shard_count(args.redis, args.shards)
    except ShardCountMismatch as error:
        raise StartupFailure(str(error)) from None
    shard = MarketShard(
        args.shard, persistence=make_persistence(args, ShardPersistence, shard=args.shard), history=make_history(args)
    )
    relay = ShardRelay(args.redis, shard, batch_size=args.batch or 64, trim_interval=args.trim_interval)
    _run_until_signal(relay.run)
    return 0


def _run_until_signal(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `run(stop)` on a new event loop; SIGINT or SIGTERM sets `stop`."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())


# --------------------------------------------------------------------------- api / ws
def build_api_app(
    redis_url: str,
    reply_timeout: float,
    public_ws_url: str | None = None,
    auth: Any = None,
    auth_redis_url: str | None = None,
) -> Any:
    """One API worker's app (a factory: each Sanic worker process builds its own). `auth`: an
    `openbell.options.AuthConfig` (None: authentication on, with a token and secret nobody knows);
    `auth_redis_url`: where rate limits, seen signatures and listen keys live (default: `redis_url`)."""
    from openbell.cluster.listen_keys import RedisListenKeys
    from openbell.cluster.ratelimit import RedisLimiter, RedisReplays
    from openbell.cluster.remote import RemoteEngine
    from openbell.http.app import create_app

    auth_redis = auth_redis_url or redis_url
    engine = RemoteEngine(redis_url, reply_timeout=reply_timeout)
    authenticator = (
        auth.authenticator(engine, RedisLimiter(auth_redis), RedisReplays(auth_redis)) if auth is not None else None
    )
    listen_keys = RedisListenKeys(auth_redis)
    app = create_app(
        engine,
        name="openbell_api",
        websocket=False,
        public_ws_url=public_ws_url,
        auth=authenticator,
        listen_keys=listen_keys,
    )
    _manage(app, engine)
    return app


def build_ws_app(redis_url: str, dev: bool = False, server_secret: bytes | None = None) -> Any:
    """One WebSocket worker's app: the streams on a Redis-fed bus, and /health. `dev`: private streams by
    `?user_id=` (no authentication). `server_secret`: the API processes' (API keys' secrets derive from it), for
    the signatures of the WebSocket API."""
    from sanic import Sanic
    from sanic.response import json

    from openbell.cluster.listen_keys import RedisListenKeys
    from openbell.cluster.redisbus import RedisEventBus
    from openbell.cluster.remote import RemoteEngine
    from openbell.edge.auth import Authenticator, install
    from openbell.http.app import extend
    from openbell.http.observe import install_metrics
    from openbell.ws.server import install_websocket

    bus = RedisEventBus(redis_url)
    engine = RemoteEngine(redis_url, bus=bus)
    app = Sanic("openbell_ws", configure_logging=False)  # logging is configured once, in main
    extend(app)
    app.ctx.engine = engine
    app.ctx.listen_keys = RedisListenKeys(redis_url)
    install(app, Authenticator(engine, dev=dev, server_secret=server_secret))

    @app.get("/health")
    async def health(request: Any) -> Any:
        connected = engine.running and bus.connected
        return json({"status": "ok" if connected else "redis unavailable"}, status=200 if connected else 503)

    install_websocket(app, engine)
    install_metrics(app, latency=False)
    _manage(app, engine)
    return app


def _manage(app: Any, engine: Any) -> None:
    async def start(app: Any) -> None:
        await engine.start()

    async def stop(app: Any) -> None:
        await engine.stop()

    app.register_listener(start, "before_server_start")
    app.register_listener(stop, "after_server_stop")


def serve(args: argparse.Namespace, factory: Callable[[], Any], what: str) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from openbell.cli import check_port_free
    from openbell.http.protocol import BoundedProtocol

    check_port_free(args.host, args.port)
    options = {
        "host": args.host,
        "port": args.port,
        "access_log": args.access_log,
        "debug": False,
        "motd": False,
        "protocol": BoundedProtocol,
    }
    line = f"{what} listening on {args.host}:{args.port} with {args.workers} worker(s)"
    factory = partial(_bounded, factory, args.head_timeout, args.proxies, args.real_ip_header)
    if args.workers <= 1:
        app = factory()
        _announce(app, line)
        app.run(single_process=True, **options)
        return 0
    loader = AppLoader(factory=factory)
    app = loader.load()
    _announce(app, line)
    app.prepare(workers=args.workers, **options)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


def _bounded(factory: Callable[[], Any], head_seconds: float, proxies: int, real_ip_header: str | None) -> Any:
    from openbell.http.protocol import configure

    app = factory()
    configure(app, head_seconds, proxies=proxies, real_ip_header=real_ip_header)
    return app


def _announce(app: Any, line: str) -> None:
    async def listening(app: Any) -> None:
        log.info("%s", line)

    app.register_listener(listening, "main_process_ready")
