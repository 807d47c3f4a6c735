"""Command line of `python run.py`: the embedded exchange (engine, REST and WebSocket in one process).

Options can also come from the environment: OPENBELL_HOST, OPENBELL_PORT, OPENBELL_MARKETS,
OPENBELL_LOG_LEVEL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

DEFAULT_MARKETS = "TATA_INR:0.01:1"
DEFAULT_ASSETS = "TATA:2,INR:2"


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="openbell exchange server: matching engine, REST API (/api/v1) and WebSocket streams (/ws) "
        "in one process. Interactive API docs at /docs. For the Redis-fed multi-process deployment run "
        "`python run.py engine|api|ws|cluster --help`.",
    )
    parser.add_argument("--host", default=env("OPENBELL_HOST", "127.0.0.1"), help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env("OPENBELL_PORT", "8000")), help="port (default 8000)")
    parser.add_argument(
        "--markets",
        default=env("OPENBELL_MARKETS", DEFAULT_MARKETS),
        help="comma-separated SYMBOL:TICK:LOT[:MAKER_BPS:TAKER_BPS] started at boot (default %(default)s)",
    )
    parser.add_argument(
        "--assets",
        default=env("OPENBELL_ASSETS", DEFAULT_ASSETS),
        help="comma-separated ASSET:DECIMALS for the boot markets' assets (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=env("OPENBELL_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )
    parser.add_argument(
        "--reply-timeout", type=float, default=5.0, help="seconds a request waits for the engine (default 5)"
    )
    parser.add_argument("--max-open-orders", type=int, default=1000, help="open orders allowed per user (default 1000)")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.005,
        help="Python thread switch interval in seconds (default 0.005, Python's own; bench/engine_bench.py "
        "found no smaller value better in general)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")
    parser.add_argument(
        "--public-ws-url",
        default=env("OPENBELL_PUBLIC_WS_URL"),
        help="the WebSocket URL the web page at / connects to, as a browser reaches it (default: /ws on the "
        "page's own address; set it behind a proxy that serves the streams elsewhere)",
    )
    add_persistence_arguments(parser)
    return parser


def add_persistence_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("durability")
    group.add_argument(
        "--data-dir",
        default=env("OPENBELL_DATA_DIR", "./data"),
        help="journal and snapshots live here; a restart with the same directory continues where it stopped "
        "(default ./data)",
    )
    group.add_argument(
        "--in-memory", action="store_true", help="keep nothing on disk: a restart starts from empty books and balances"
    )
    group.add_argument(
        "--no-fsync",
        action="store_true",
        help="write the journal without fsync (faster; a machine crash, unlike a process crash, can lose the tail)",
    )
    group.add_argument(
        "--snapshot-every", type=int, default=200_000, help="take a snapshot after this many commands (default 200000)"
    )
    group.add_argument(
        "--snapshot-interval",
        type=float,
        default=300.0,
        help="and at least this often in seconds while commands arrive (default 300)",
    )
    group.add_argument(
        "--keep-snapshots", type=int, default=2, help="snapshots kept; older journal is pruned (default 2)"
    )
    group.add_argument(
        "--db",
        default=env("OPENBELL_DB"),
        help="history database for trades, orders and balance changes: sqlite:///PATH or postgresql://... "
        "(default: sqlite in the data directory; none with --in-memory)",
    )
    group.add_argument("--no-history", action="store_true", help="keep no history database")


def make_history(args: argparse.Namespace) -> object | None:
    if args.no_history:
        return None
    url = args.db
    if url is None:
        if args.in_memory:
            return None
        import pathlib

        data_dir = pathlib.Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{data_dir / 'history.sqlite3'}"
    from openbell.history.store import HistoryStore
    from openbell.history.writer import HistoryWriter

    return HistoryWriter(HistoryStore(url))


def make_persistence(args: argparse.Namespace) -> object | None:
    if args.in_memory:
        return None
    import pathlib

    from openbell.durability.persistence import Persistence

    return Persistence(
        pathlib.Path(args.data_dir),
        fsync=not args.no_fsync,
        snapshot_every_commands=args.snapshot_every,
        snapshot_every_seconds=args.snapshot_interval,
        keep_snapshots=args.keep_snapshots,
    )


def parse_markets(markets: str, assets: str) -> list:
    from openbell.core.grid import Asset, GridError, make_market_spec

    known: dict[str, Asset] = {}
    for item in filter(None, (part.strip() for part in assets.split(","))):
        name, _, decimals = item.partition(":")
        known[name] = Asset(name, int(decimals))
    specs = []
    for item in filter(None, (part.strip() for part in markets.split(","))):
        parts = item.split(":")
        if len(parts) not in (3, 5):
            raise SystemExit(f"--markets: {item!r} is not SYMBOL:TICK:LOT[:MAKER_BPS:TAKER_BPS]")
        fees = {"maker_fee_bps": int(parts[3]), "taker_fee_bps": int(parts[4])} if len(parts) == 5 else {}
        try:
            spec = make_market_spec(parts[0], parts[1], parts[2], known, **fees)
        except GridError as error:
            raise SystemExit(f"--markets: {item}: {error.message}") from None
        known.setdefault(spec.base.symbol, spec.base)
        known.setdefault(spec.quote.symbol, spec.quote)
        specs.append(spec)
    return specs


CLUSTER_MODES = ("engine", "api", "ws", "cluster")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLUSTER_MODES:
        from openbell.cluster.cli import main as cluster_main

        return int(cluster_main(argv))
    if argv and argv[0] == "inspect":
        from openbell.durability.inspect import main as inspect_main

        return int(inspect_main(argv[1:]))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    specs = parse_markets(args.markets, args.assets)
    sys.setswitchinterval(args.switch_interval)

    from openbell.actors.engine import Engine, tune_garbage_collector

    tune_garbage_collector()
    from openbell.http.app import create_app

    engine = Engine(
        reply_timeout=args.reply_timeout,
        max_open_orders_per_user=args.max_open_orders,
        persistence=make_persistence(args),  # type: ignore[arg-type]
        history=make_history(args),
    )
    engine.start(specs)
    try:
        app = create_app(engine, public_ws_url=args.public_ws_url)
        app.run(
            host=args.host,
            port=args.port,
            single_process=True,
            access_log=not args.no_access_log and args.log_level == "debug",
            debug=False,
            motd=False,
        )
    finally:
        engine.stop()
    return 0
