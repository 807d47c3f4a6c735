"""Every option of `python run.py` and its modes, in one place: the same name, default and help wherever an
option applies, and one function that turns them into the engine, its journal and its history.

Modes: the embedded exchange (no mode word), `engine`, `balance`, `markets`, `api`, `ws`, `cluster` (all but
the first over Redis). Engine options (markets, limits) exist in the embedded, engine, balance and cluster
modes; durability and history options wherever state is kept (those and `markets`); server options
(address, workers, access log, trusted proxies) in the embedded, api and ws modes; `cluster` passes each child the options
that are its own (`engine_argv`, `markets_argv`). Environment variables give defaults where noted
(OPENBELL_HOST, OPENBELL_PORT, OPENBELL_MARKETS, OPENBELL_ASSETS, OPENBELL_DATA_DIR, OPENBELL_DB,
OPENBELL_REDIS, OPENBELL_LOG_LEVEL).
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

DEFAULT_MARKETS = "TATA_INR:0.01:1"
DEFAULT_ASSETS = "TATA:2,INR:2"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
MODES = ("engine", "balance", "markets", "api", "ws", "cluster", "simulate")
TOOLS = ("replay", "statement")
"""Operator tools: they read a data directory or the history database and serve nothing."""

DESCRIPTIONS = {
    None: "openbell exchange server: matching engine, REST API (/api/v1) and WebSocket streams (/ws) in one "
    "process. Interactive API docs at /docs. The Redis-fed deployment: `python run.py engine|api|ws|cluster "
    "--help`; what a data directory holds: `python run.py inspect --help`.",
    "engine": "The matching engine and its Redis relay: reads commands from the Redis stream, journals them, "
    "publishes replies and events. No HTTP.",
    "balance": "The balance process of the sharded layout: the sequencer, funds holds and settlement, and the relay "
    "from the command stream; sends each market's batches to the market shard that matches it, through Redis. "
    "Starts once a markets process has said how many shards there are.",
    "markets": "A market shard of the sharded layout: matches the markets assigned to shard --shard (of --shards), "
    "reading their batches from Redis and writing settlements and events back. A market added at run time goes "
    "to the shard with the fewest markets.",
    "api": "REST API worker processes on one port, talking to the engine through Redis.",
    "ws": "WebSocket worker processes on one port, streaming the engine's events from Redis.",
    "cluster": "The engine, the API workers and the WebSocket workers as child processes, watched and restarted "
    "together; Ctrl-C or SIGTERM stops them all. The API listens on --api-port, the WebSocket streams on "
    "--ws-port (ws://HOST:WS_PORT/ws). With --market-shards N, a balance process and N market shards run "
    "instead of the one engine process.",
    "simulate": "A market simulator against a running exchange, through its public API: funds its own users, then "
    "makers quote post-only ladders around a random-walk mid (skewed by inventory, cancelled and replaced as the mid "
    "moves) and takers send market and IOC orders in bursts. Prints a progress line and a summary, and at the end "
    "checks that its users hold exactly their deposits plus their fills less fees (exit 1 if not, or on any 5xx).",
    "replay": "The venue as it was just after command --at SEQ (books, balances, open orders as JSON), rebuilt "
    "from the snapshot before it and the journal; --verify replays the whole journal and checks conservation of "
    "funds at every snapshot. Reads the data directory without changing it (a running server may hold it). "
    "Exit status 1 if a check fails, 2 if the request cannot be answered.",
    "statement": "A user's account statement for a period, from the history database: deposits, trades with "
    "fees, orders, and the balance per asset at both ends, checked to reconcile exactly (opening + changes = "
    "closing; exit status 1 if they do not).",
}


def build_parser(mode: str | None) -> argparse.ArgumentParser:
    prog = "python run.py" + (f" {mode}" if mode else "")
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTIONS[mode])
    add_logging(parser)
    if mode == "simulate":
        add_simulate(parser)
        return parser
    if mode == "replay":
        add_replay(parser)
        return parser
    if mode == "statement":
        add_statement(parser)
        return parser
    add_metrics(parser)
    if mode is not None:
        add_redis(parser)
    if mode in (None, "engine", "balance", "cluster"):
        add_engine(parser)
    if mode == "markets":
        add_shard(parser)
    if mode in (None, "engine", "balance", "markets", "cluster"):
        add_durability(parser)
    if mode in ("engine", "balance", "markets", "cluster"):
        add_relay(parser)
    if mode in (None, "api", "ws"):
        add_server(parser, 8001 if mode == "ws" else 8000, workers=mode is not None)
    if mode in (None, "api", "cluster"):
        parser.add_argument(
            "--reply-timeout",
            type=float,
            default=5.0,
            help="seconds a request waits for the engine before answering 504 (default 5)",
        )
    if mode == "cluster":
        add_cluster(parser)
    if mode in (None, "api", "ws", "cluster"):
        add_auth(parser, mode)
    if mode in (None, "api", "cluster"):
        add_web(parser, "--ws-port on the host the page was loaded from" if mode == "cluster" else None)
    return parser


def add_logging(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument(
        "--log-level",
        default=env("OPENBELL_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )


def add_metrics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="measure nothing for Prometheus (GET /metrics still answers, with nothing counted); by default every "
        "process of a deployment writes its metrics to PROMETHEUS_MULTIPROC_DIR (made for you if unset) and any "
        "API process's /metrics shows them all",
    )


def add_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("OPENBELL_DATA_DIR", "./data"),
        help="the data directory to read: an engine's, a balance process's (balances and open orders only), or a "
        "sharded cluster's DATA_DIR (balances from its balance/, books from its markets-K/) (default ./data)",
    )
    parser.add_argument(
        "--at", type=int, metavar="SEQ", help="show the venue just after command SEQ (the order id of an order)"
    )
    parser.add_argument("--out", metavar="FILE", help="write the JSON to FILE instead of standard output")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="replay the whole journal and check conservation of funds, holds and books at every snapshot, and "
        "that the replayed state equals each snapshot",
    )


def add_statement(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--user", required=True, help="the user id the statement is for (required)")
    parser.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="DATE",
        help="first day of the period, YYYY-MM-DD (UTC, from 00:00), or an ISO date-time with a UTC offset (required)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        required=True,
        metavar="DATE",
        help="last day of the period, YYYY-MM-DD (UTC, to its end), or an ISO date-time with a UTC offset at which "
        "the period ends, excluded (required)",
    )
    parser.add_argument("--format", choices=["json", "csv"], default="json", help="output format (default json)")
    parser.add_argument("--out", metavar="FILE", help="write the statement to FILE instead of standard output")
    parser.add_argument(
        "--db",
        default=env("OPENBELL_DB"),
        help="the history database: sqlite:///PATH or postgresql://... (default: history.sqlite3 in --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        default=env("OPENBELL_DATA_DIR", "./data"),
        help="where the default SQLite history database is (default ./data)",
    )


def add_redis(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis",
        default=os.environ.get("OPENBELL_REDIS", DEFAULT_REDIS),
        help="Redis URL (default %(default)s)",
    )


def add_engine(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--markets",
        default=env("OPENBELL_MARKETS", DEFAULT_MARKETS),
        help="comma-separated SYMBOL:TICK:LOT[:MAKER_BPS:TAKER_BPS] added at start if missing (default %(default)s)",
    )
    group.add_argument(
        "--assets",
        default=env("OPENBELL_ASSETS", DEFAULT_ASSETS),
        help="comma-separated ASSET:DECIMALS, one for every asset of --markets (default %(default)s)",
    )
    group.add_argument("--max-open-orders", type=int, default=1000, help="open orders allowed per user (default 1000)")
    add_switch_interval(group)


def add_switch_interval(group: Any) -> None:
    group.add_argument(
        "--switch-interval",
        type=float,
        default=0.005,
        help="Python thread switch interval in seconds (default 0.005, Python's own; bench/engine_bench.py "
        "found no smaller value better in general)",
    )


def add_shard(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("market shard")
    group.add_argument(
        "--shard", type=int, required=True, help="this process's shard number, from 0 to --shards - 1 (required)"
    )
    group.add_argument(
        "--shards",
        type=int,
        required=True,
        help="how many market shards there are (required; the same for every markets process, kept in Redis)",
    )
    add_switch_interval(group)


def add_durability(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    durability = parser.add_argument_group("durability and history")
    durability.add_argument(
        "--data-dir",
        default=env("OPENBELL_DATA_DIR", "./data"),
        help="journal, snapshots and the SQLite history live here; a restart with the same directory continues "
        "where it stopped (default ./data)",
    )
    durability.add_argument(
        "--in-memory", action="store_true", help="keep nothing on disk: a restart starts from empty books and balances"
    )
    durability.add_argument(
        "--no-fsync",
        action="store_true",
        help="write the journal without fsync (faster; a machine crash, unlike a process crash, can lose the tail)",
    )
    durability.add_argument(
        "--snapshot-every", type=int, default=200_000, help="take a snapshot after this many commands (default 200000)"
    )
    durability.add_argument(
        "--snapshot-interval",
        type=float,
        default=300.0,
        help="and at least this often in seconds while commands arrive (default 300)",
    )
    durability.add_argument(
        "--keep-snapshots", type=int, default=2, help="snapshots kept; older journal is pruned (default 2)"
    )
    durability.add_argument(
        "--db",
        default=env("OPENBELL_DB"),
        help="history database for trades, orders and balance changes: sqlite:///PATH or postgresql://... "
        "(default: SQLite in the data directory; none with --in-memory)",
    )
    durability.add_argument("--no-history", action="store_true", help="keep no history database")
    durability.add_argument(
        "--history-in-process",
        action="store_true",
        help="write the history database from this process (default: a child process writes it, off the serving "
        "process's interpreter)",
    )


def add_relay(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("relay (the process's side of Redis)")
    group.add_argument(
        "--batch",
        type=int,
        default=None,
        help="stream entries read per XREADGROUP (default 256; a market shard's default is 64)",
    )
    group.add_argument(
        "--trim-interval",
        type=float,
        default=5.0,
        help="seconds between trims of the journaled part of the command stream (default %(default)s)",
    )


def add_server(parser: argparse.ArgumentParser, port: int, *, workers: bool) -> None:
    env = os.environ.get
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=env("OPENBELL_HOST", "127.0.0.1"), help="address to bind (default 127.0.0.1)")
    group.add_argument("--port", type=int, default=int(env("OPENBELL_PORT", str(port))), help=f"port (default {port})")
    if workers:
        group.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    group.add_argument("--access-log", action="store_true", help="log every request, at info level (default off)")
    group.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        help="seconds a request's head may take from its first byte, however slowly it trickles in (408 "
        "after; default 10)",
    )
    add_proxies(group)


def add_proxies(group: Any) -> None:
    """Which client address the server believes: the options of every mode that serves HTTP."""
    env = os.environ.get

    def proxies(text: str) -> int:
        value = int(text)
        if not 0 <= value <= 16:
            raise argparse.ArgumentTypeError(f"{text} is not between 0 and 16")
        return value

    group.add_argument(
        "--proxies",
        type=proxies,
        default=env("OPENBELL_PROXIES", "0"),  # a string default goes through `type` too
        help="reverse proxies in front of this server, each appending to X-Forwarded-For: the client's address "
        "(per-address rate limits, WebSocket connection caps) is the one the outermost of them saw. Default 0: "
        "the connection's own peer, and X-Forwarded-For is ignored (a client could write anything there)",
    )
    group.add_argument(
        "--real-ip-header",
        default=env("OPENBELL_REAL_IP_HEADER") or None,
        help="a header the proxy in front sets to the client's address, such as X-Real-IP; it takes precedence "
        "over --proxies (default: none)",
    )


def add_cluster(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--host", default="127.0.0.1", help="address the API and WebSocket processes bind (default 127.0.0.1)"
    )
    group.add_argument("--api-port", type=int, default=8000, help="port of the REST API workers (default 8000)")
    group.add_argument("--ws-port", type=int, default=8001, help="port of the WebSocket workers (default 8001)")
    group.add_argument("--api-workers", type=int, default=2, help="REST API worker processes (default 2)")
    group.add_argument("--ws-workers", type=int, default=1, help="WebSocket worker processes; 0 for none (default 1)")
    group.add_argument(
        "--market-shards",
        type=int,
        default=0,
        help="run a balance process and this many market shards (run.py balance, run.py markets) instead of one "
        "engine process; their data directories are DATA_DIR/balance and DATA_DIR/markets-K (default 0: one engine)",
    )
    group.add_argument("--access-log", action="store_true", help="the API workers log every request (default off)")
    add_proxies(group)


def add_simulate(parser: argparse.ArgumentParser) -> None:
    def positive(kind: type) -> Any:
        def parse(text: str) -> Any:
            value = kind(text)
            if value < 0:
                raise argparse.ArgumentTypeError(f"{text} is negative")
            return value

        return parse

    def refresh_seconds(text: str) -> float:
        value = float(text)
        if not 0 < value < 3600:
            raise argparse.ArgumentTypeError(f"{text} is not more than 0 and less than 3600")
        return value

    group = parser.add_argument_group("simulation")
    group.add_argument(
        "--url",
        default=os.environ.get("OPENBELL_URL", "http://127.0.0.1:8000"),
        help="the exchange's REST address (default %(default)s); an address that does not answer is refused",
    )
    group.add_argument(
        "--ws-url",
        default=None,
        help="its WebSocket endpoint, where the users' fills are read (default: where the exchange's "
        "/api/v1/config sends the web page, else /ws on --url)",
    )
    group.add_argument(
        "--markets",
        default=None,
        help="comma-separated markets to trade, such as TATA_INR,INFY_INR (default: every market of the exchange)",
    )
    group.add_argument("--makers", type=positive(int), default=4, help="market makers per market (default 4)")
    group.add_argument("--takers", type=positive(int), default=8, help="takers per market (default 8)")
    group.add_argument(
        "--rate",
        type=positive(float),
        default=200.0,
        help="orders and cancels per second at most, all markets together; 0 for no limit (default 200)",
    )
    group.add_argument(
        "--duration",
        type=positive(float),
        default=60.0,
        help="seconds to trade before the final check; 0 to trade until Ctrl-C (default 60)",
    )
    group.add_argument(
        "--steps",
        type=positive(int),
        default=None,
        help="stop each market after this many steps of its loop (default: --duration decides); with a fixed "
        "count the same --seed sends the same requests",
    )
    group.add_argument(
        "--seed", type=int, default=1, help="seed of every random choice: walks, quotes, bursts, sizes (default 1)"
    )
    group.add_argument(
        "--concurrency",
        type=positive(int),
        default=1,
        help="traders of a market acting at once, each with one request in flight (default 1: one request at a "
        "time per market, which keeps a run reproducible; more for load)",
    )
    group.add_argument(
        "--admin-token",
        default=os.environ.get("OPENBELL_ADMIN_TOKEN"),
        help="the operator's token, when the exchange has API keys: the simulator then makes its users' keys "
        "through /admin/keys and signs their requests (default: none; the requests name their user)",
    )
    group.add_argument(
        "--listen-key-refresh",
        type=refresh_seconds,
        default=1800.0,
        metavar="SECONDS",
        help="with API keys on, seconds between extensions of each user's listen key, which the exchange keeps 60 "
        "minutes after its last (more than 0, less than 3600; default 1800)",
    )
    group.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="write every request to FILE, market by market, with the run id and the exchange's order ids "
        "replaced by names (two runs with the same seed and --steps write the same file)",
    )
    group.add_argument(
        "--progress",
        type=positive(float),
        default=1.0,
        help="seconds between progress lines; 0 for none (default 1)",
    )
    group.add_argument(
        "--wait",
        type=positive(float),
        default=0.0,
        help="seconds to wait for the exchange to answer before giving up (default 0: refuse at once)",
    )


def add_auth(parser: argparse.ArgumentParser, mode: str | None) -> None:
    group = parser.add_argument_group("authentication")
    group.add_argument(
        "--dev",
        action="store_true",
        help="development mode: NO authentication (any client acts as any user_id, credits any account, adds "
        "markets); refused unless the address is loopback",
    )
    key_secret_help = (
        "file holding the server secret every API key's secret is derived from, kept outside the data "
        "directory, made mode 0600 if missing (default: OPENBELL_KEY_SECRET, else "
        "~/.config/openbell/key-secret; with --in-memory, a secret made for this run)"
    )
    if mode == "ws":
        group.add_argument(
            "--key-secret-file",
            default=None,
            help=key_secret_help + "; the WebSocket API (/ws-api/v3) checks signatures with it, so it must be "
            "the API processes' secret",
        )
        return
    if mode == "api":
        group.add_argument(
            "--auth-redis",
            default=None,
            help="Redis URL for rate limits, the signatures already seen and listen keys (default: --redis); "
            "the WebSocket workers read listen keys from their --redis",
        )
    group.add_argument(
        "--admin-token-file",
        default=None,
        help="file holding the operator's token (Authorization: Bearer), made mode 0600 if missing (default: "
        "OPENBELL_ADMIN_TOKEN, else DATA_DIR/admin-token, else a token made for this run and printed once)",
    )
    group.add_argument("--key-secret-file", default=None, help=key_secret_help)
    limits = parser.add_argument_group(
        "rate limits",
        "token buckets per API key and per client address, one for order entry (place, cancel) and one for "
        "reads; over a limit the answer is 429 with Retry-After. 0 turns a limit off. In the cluster each is one "
        "limit across all API workers (kept in Redis).",
    )
    limits.add_argument(
        "--orders-per-key", type=float, default=100, help="orders and cancels per second per API key (default 100)"
    )
    limits.add_argument("--reads-per-key", type=float, default=200, help="reads per second per API key (default 200)")
    limits.add_argument(
        "--orders-per-address",
        type=float,
        default=1000,
        help="orders and cancels per second per client address (default 1000)",
    )
    limits.add_argument(
        "--reads-per-address", type=float, default=2000, help="reads per second per client address (default 2000)"
    )
    limits.add_argument(
        "--rate-burst-seconds",
        type=float,
        default=2.0,
        help="each bucket holds this many seconds of its rate: what a quiet client may send at once (default 2)",
    )


def resolve_auth(args: argparse.Namespace, host: str, *, data_dir: str | None, in_memory: bool) -> Any:
    """The `AuthConfig` the options ask for, its token and secret read or made (see `openbell.edge.credentials`)."""
    from openbell.edge.credentials import (
        CredentialError,
        admin_token,
        is_loopback,
        key_secret,
    )
    from openbell.edge.ratelimit import RateLimits

    for name in ("orders_per_key", "reads_per_key", "orders_per_address", "reads_per_address", "rate_burst_seconds"):
        if not 0 <= getattr(args, name) <= 1e9:
            raise OptionError(f"--{name.replace('_', '-')} must be from 0 to 1e9")
    limits = RateLimits.of(
        (args.orders_per_key, args.reads_per_key),
        (args.orders_per_address, args.reads_per_address),
        args.rate_burst_seconds,
    )
    if args.dev:
        if not is_loopback(host):
            raise OptionError(f"--dev turns authentication off and is refused on {host}: bind 127.0.0.1 or drop --dev")
        return AuthConfig(dev=True, limits=limits)
    try:
        token, token_from = admin_token(args.admin_token_file, None if in_memory else data_dir)
        secret, secret_from = key_secret(args.key_secret_file, in_memory)
    except CredentialError as error:
        raise OptionError(str(error)) from None
    return AuthConfig(False, token, token_from, secret, secret_from, limits)


class AuthConfig:
    """Authentication as the options set it: dev mode, or the operator's token and the server secret."""

    def __init__(
        self,
        dev: bool,
        admin_token: str = "",
        token_from: str = "",
        server_secret: bytes = b"",
        secret_from: str = "",
        limits: Any = None,
    ) -> None:
        self.dev = dev
        self.limits = limits
        self.admin_token = admin_token
        self.token_from = token_from
        self.server_secret = server_secret
        self.secret_from = secret_from

    def announce(self, log: Any) -> None:
        """Say where the token and secret come from (never what they are); print a token made for this run once."""
        import sys

        if self.dev:
            log.warning(
                "DEV MODE: AUTHENTICATION IS OFF. Any client acts as any user_id, credits any account and adds "
                "markets. Never expose this server."
            )
            return
        if self.token_from == "generated":
            print(f"openbell: operator token for this run (Authorization: Bearer): {self.admin_token}", flush=True)
            sys.stdout.flush()
        elif self.token_from == "env":
            log.info("authentication on; operator token from OPENBELL_ADMIN_TOKEN")
        else:
            log.info("authentication on; operator token in %s", self.token_from)
        if self.secret_from not in ("env", "generated"):
            log.info(
                "API key secrets derive from the server secret in %s (keep it; not in the data directory)",
                self.secret_from,
            )

    def export(self) -> None:
        """Put the token and secret in this process's environment, for the worker processes it starts."""
        from openbell.edge.credentials import ADMIN_TOKEN_ENV, KEY_SECRET_ENV

        if not self.dev:
            os.environ[ADMIN_TOKEN_ENV] = self.admin_token
            os.environ[KEY_SECRET_ENV] = self.server_secret.decode("latin-1")

    def authenticator(self, engine: Any, limiter: Any = None, shared_replays: Any = None) -> Any:
        """The Authenticator of one process, with `limiter` (default: buckets of this process) and, in the
        cluster, the signatures every API worker saw (`shared_replays`)."""
        from openbell.edge.auth import Authenticator
        from openbell.edge.ratelimit import LocalLimiter

        limiter = limiter if limiter is not None else LocalLimiter()
        if self.dev:
            return Authenticator(engine, dev=True, limiter=limiter, limits=self.limits)
        return Authenticator(
            engine,
            admin_token=self.admin_token,
            server_secret=self.server_secret,
            limiter=limiter,
            limits=self.limits,
            shared_replays=shared_replays,
        )


def add_web(parser: argparse.ArgumentParser, default: str | None) -> None:
    from openbell.http.web import check_public_ws_url

    shown = default or "/ws on the page's own address"
    parser.add_argument(
        "--public-ws-url",
        type=check_public_ws_url,
        default=os.environ.get("OPENBELL_PUBLIC_WS_URL"),
        help=f"the WebSocket URL the web page at / connects to, as a browser reaches it (default: {shown}; "
        "a 0.0.0.0 host means the host the page was loaded from)",
    )


# --------------------------------------------------------------------------- passing options on
_ENGINE_VALUES = (
    "markets",
    "assets",
    "max_open_orders",
    "switch_interval",
    "data_dir",
    "snapshot_every",
    "snapshot_interval",
    "keep_snapshots",
    "db",
    "batch",
    "trim_interval",
)
_ENGINE_FLAGS = ("in_memory", "no_fsync", "no_history", "history_in_process", "no_metrics")


_MARKETS_VALUES = (
    "switch_interval",
    "snapshot_every",
    "snapshot_interval",
    "keep_snapshots",
    "db",
    "batch",
    "trim_interval",
)


def engine_argv(args: argparse.Namespace, data_dir: str | None = None) -> list[str]:
    """The engine options of `args` as command-line words (what `cluster` gives its engine or balance child),
    with `data_dir` instead of `--data-dir` if given."""
    return _argv(args, _ENGINE_VALUES, data_dir)


def markets_argv(args: argparse.Namespace, data_dir: str) -> list[str]:
    """The options of `args` that a market shard takes, with its own data directory (what `cluster` gives it)."""
    return _argv(args, _MARKETS_VALUES, data_dir)


def _argv(args: argparse.Namespace, values: tuple[str, ...], data_dir: str | None) -> list[str]:
    out: list[str] = []
    for name in values:
        value = getattr(args, name)
        if name == "data_dir" and data_dir is not None:
            value = data_dir
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    if data_dir is not None and "data_dir" not in values:
        out += ["--data-dir", data_dir]
    for name in _ENGINE_FLAGS:
        if getattr(args, name):
            out.append(f"--{name.replace('_', '-')}")
    return out


# --------------------------------------------------------------------------- building the engine
class OptionError(Exception):
    """Options that cannot work together, or a value that cannot be used (said in one line)."""


def parse_markets(markets: str, assets: str) -> list[Any]:
    """The `MarketSpec`s of --markets, every asset's decimals taken from --assets."""
    from openbell.core.grid import Asset, GridError, make_market_spec

    known: dict[str, Asset] = {}
    for item in filter(None, (part.strip() for part in assets.split(","))):
        name, _, decimals = item.partition(":")
        try:
            known[name] = Asset(name, int(decimals))
        except (ValueError, GridError) as error:
            raise OptionError(f"--assets: {item!r} is not ASSET:DECIMALS ({error})") from None
    specs = []
    for item in filter(None, (part.strip() for part in markets.split(","))):
        parts = item.split(":")
        if len(parts) not in (3, 5):
            raise OptionError(f"--markets: {item!r} is not SYMBOL:TICK:LOT[:MAKER_BPS:TAKER_BPS]")
        for asset in parts[0].split("_"):
            if asset and asset not in known:
                raise OptionError(
                    f"--markets: {parts[0]} trades {asset}, which --assets does not name: add {asset}:DECIMALS to --assets"
                )
        try:
            fees = {"maker_fee_bps": int(parts[3]), "taker_fee_bps": int(parts[4])} if len(parts) == 5 else {}
            spec = make_market_spec(parts[0], parts[1], parts[2], known, **fees)
        except ValueError as error:
            message = error.message if isinstance(error, GridError) else str(error)
            raise OptionError(f"--markets: {item}: {message}") from None
        specs.append(spec)
    return specs


def make_history(args: argparse.Namespace) -> Any:
    """The HistoryWriter the options ask for, or None."""
    if args.no_history:
        return None
    from openbell.history.store import HistoryStore
    from openbell.history.writer import REJECTED_FILE, HistoryWriter

    url = args.db
    if url is None and args.in_memory:
        return None
    data_dir = None if args.in_memory else pathlib.Path(args.data_dir)
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    if url is None:
        assert data_dir is not None
        url = f"sqlite:///{data_dir / 'history.sqlite3'}"
    rejected = data_dir / REJECTED_FILE if data_dir is not None else None
    if args.history_in_process:
        return HistoryWriter(HistoryStore(url), rejected_path=rejected)
    from openbell.history.process import HistoryProcess

    return HistoryProcess(url, rejected)


def make_persistence(args: argparse.Namespace, kind: Any = None, **extra: Any) -> Any:
    """The persistence (journal, snapshots) the options ask for, or None with --in-memory: the engine's
    `Persistence`, or `kind` (the balance process's or a market shard's, given `extra`)."""
    if args.in_memory:
        return None
    from openbell.durability.persistence import Persistence

    return (kind or Persistence)(
        pathlib.Path(args.data_dir),
        fsync=not args.no_fsync,
        snapshot_every_commands=args.snapshot_every,
        snapshot_every_seconds=args.snapshot_interval,
        keep_snapshots=args.keep_snapshots,
        **extra,
    )


def make_engine(args: argparse.Namespace, reply_timeout: float = 5.0, shard_map: Any = None) -> Any:
    """The engine the options describe (not started): with a `shard_map`, the balance process's."""
    from openbell.actors.engine import Engine

    options = {
        "reply_timeout": reply_timeout,
        "max_open_orders_per_user": args.max_open_orders,
        "history": make_history(args),
    }
    if shard_map is None:
        return Engine(persistence=make_persistence(args), **options)
    from openbell.cluster.balance import BalanceEngine
    from openbell.durability.split import BalancePersistence

    return BalanceEngine(shard_map, persistence=make_persistence(args, BalancePersistence), **options)
