"""`python run.py [MODE] [options]`: which mode runs, and start-up that fails in one line, never a traceback.

No mode word: the embedded exchange (engine, REST and WebSocket in one process). `engine`, `balance`,
`markets`, `api`, `ws`, `cluster`: the Redis-fed deployment (`openbell.cluster.modes`). `inspect`: what a
data directory holds. `replay`, `statement`: the venue after a given command, a user's account statement.
`simulate`: traders on a running exchange (`openbell.simulator`).
Every option is defined in `openbell.options`.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import Any

from openbell.options import MODES, TOOLS, OptionError, build_parser, make_engine, parse_markets, resolve_auth

log = logging.getLogger("openbell")


class StartupFailure(Exception):
    """Why a process cannot start, in one line that says what to do (printed without a traceback)."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "inspect":
        from openbell.durability.inspect import main as inspect_main

        return int(inspect_main(argv[1:]))
    if argv and argv[0] == "key":
        from openbell.keys_cli import main as key_main

        return int(key_main(argv[1:]))
    if argv and argv[0] in TOOLS:
        return run_tool(argv[0], build_parser(argv[0]).parse_args(argv[1:]))
    mode = argv[0] if argv and argv[0] in MODES else None
    args = build_parser(mode).parse_args(argv[1:] if mode else argv)
    configure_logging(args.log_level, mode)
    if mode == "simulate":  # a client: no metrics of its own
        return run_simulator(args)
    prepare_metrics(args.no_metrics)
    try:
        if mode is None:
            return run_embedded(args)
        from openbell.cluster import modes

        return int(modes.run(mode, args))
    except (StartupFailure, OptionError) as failure:
        print(f"openbell: cannot start: {failure}", file=sys.stderr)
        return 2


def run_simulator(args: argparse.Namespace) -> int:
    from openbell.simulator.runner import Options, main
    from openbell.simulator.session import SimulatorError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    named = args.markets.split(",") if args.markets else []
    markets = list(dict.fromkeys(name.strip() for name in named if name.strip())) or None
    options = Options(
        url=args.url,
        ws_url=args.ws_url,
        markets=markets,
        makers=args.makers,
        takers=args.takers,
        rate=args.rate,
        duration=args.duration,
        steps=args.steps,
        seed=args.seed,
        concurrency=max(1, args.concurrency),
        admin_token=args.admin_token,
        record=args.record,
        progress=args.progress,
        wait=args.wait,
        listen_key_refresh=args.listen_key_refresh,
    )
    try:
        return main(options)
    except SimulatorError as failure:
        print(f"openbell simulate: {failure}", file=sys.stderr)
        return 2


def prepare_metrics(off: bool) -> None:
    """Prometheus multiprocess mode for this process and every process it starts (`openbell.metrics`): the
    directory PROMETHEUS_MULTIPROC_DIR names (the operator's, kept), or one made now and removed at exit by this
    process only (its children inherit the variable). Runs before anything imports prometheus_client."""
    import os

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import atexit
        import shutil
        import tempfile

        made = tempfile.mkdtemp(prefix="openbell-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
        atexit.register(shutil.rmtree, made, True)
    else:
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    if off:
        from openbell import metrics

        metrics.disable()


def run_tool(name: str, args: argparse.Namespace) -> int:
    """`replay` and `statement`: they print what they find; a request they cannot answer is one line, exit 2."""
    configure_logging(args.log_level, None)
    if name == "replay":
        from openbell.durability.audit import main as replay_main

        return replay_main(args)
    from openbell.history.statement import main as statement_main

    return statement_main(args)


def configure_logging(level: str, mode: str | None) -> None:
    where = f" [{mode} %(process)d]" if mode else ""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s",
    )


def run_embedded(args: argparse.Namespace) -> int:
    specs = parse_markets(args.markets, args.assets)
    sys.setswitchinterval(args.switch_interval)
    check_port_free(args.host, args.port)
    auth = resolve_auth(args, args.host, data_dir=args.data_dir, in_memory=args.in_memory)
    engine = start_engine(args, specs, args.reply_timeout)
    from openbell.http.app import create_app
    from openbell.http.protocol import BoundedProtocol
    from openbell.http.protocol import configure as configure_protocol

    try:
        app = create_app(engine, public_ws_url=args.public_ws_url, auth=auth.authenticator(engine))
        configure_protocol(app, args.head_timeout, proxies=args.proxies, real_ip_header=args.real_ip_header)
        auth.announce(log)
        announce(app, f"openbell listening on http://{args.host}:{args.port} (REST /api/v1, WebSocket /ws, docs /docs)")
        app.run(
            host=args.host,
            port=args.port,
            single_process=True,
            access_log=args.access_log,
            debug=False,
            motd=False,
            protocol=BoundedProtocol,
        )
    finally:
        engine.stop()
    return 0


def announce(app: Any, line: str) -> None:
    """Log `line` once the server listens (from the process that serves, once)."""

    async def listening(app: Any) -> None:
        log.info("%s", line)

    app.register_listener(listening, "after_server_start")


def check_port_free(host: str, port: int) -> None:
    """Fail before recovery work if the address is taken (another openbell, most likely)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StartupFailure(
                f"cannot listen on {host}:{port} ({error.strerror}): is another server running there? "
                "stop it or pass --port"
            ) from None


def start_engine(args: argparse.Namespace, specs: list[Any], reply_timeout: float = 5.0, shard_map: Any = None) -> Any:
    """The engine recovered from its data directory and started, or StartupFailure saying why not. With a
    `shard_map`, the balance process's engine (its markets are matched by market shards)."""
    from openbell.actors.engine import tune_garbage_collector
    from openbell.durability.journal import JournalCorrupt, JournalFormatError
    from openbell.durability.persistence import DataDirLocked, RecoveryError
    from openbell.durability.records import ReplayError
    from openbell.durability.snapshots import SnapshotFormatError
    from openbell.edge.client import EngineError
    from openbell.history.process import HistoryUnavailable
    from openbell.history.store import HistorySchemaError

    tune_garbage_collector()
    try:
        engine = make_engine(args, reply_timeout, shard_map)
        engine.start(specs)
    except (JournalCorrupt, ReplayError) as error:
        raise StartupFailure(
            f"{error}. Acknowledged records may follow the damaged one, so the server will not cut it off: "
            "restore the file from a backup, or run `python run.py inspect` to see what the directory holds"
        ) from None
    except (
        JournalFormatError,
        SnapshotFormatError,
        DataDirLocked,
        RecoveryError,
        HistorySchemaError,
        HistoryUnavailable,
        EngineError,
    ) as error:
        raise StartupFailure(str(error)) from None
    except OSError as error:
        raise StartupFailure(f"{error}") from None
    except Exception as error:  # a history database that does not answer
        if type(error).__module__.startswith("psycopg"):
            raise StartupFailure(f"the history database does not answer: {error}".strip()) from None
        raise
    return engine
