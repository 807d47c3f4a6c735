"""A minimal server for the WebSocket tests and benchmark: an engine, `install_websocket`, and test routes.

    python tests/ws_server_main.py --port 8123 [--send-queue-limit N] [--max-subscriptions N] ...

Serves until SIGINT/SIGTERM. It seeds nothing. Test-only routes (never part of `openbell.ws`):
- POST /_test/command: JSON -> one engine command (deposit, place, cancel) or a depth query, awaited;
- POST /_test/produce: start a thread that makes `rate` trades per second for `seconds` (benchmark);
- GET  /_test/stats: the hub's counters.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

from openbell.actors.engine import Engine
from openbell.core.commands import CancelOrder, Deposit, GetDepth, PlaceOrder
from openbell.core.grid import Asset, MarketSpec, make_market_spec
from openbell.core.messages import Depth, Reply
from openbell.core.types import OrderType, Side, TimeInForce
from openbell.edge.auth import Authenticator, install
from openbell.ws.server import WsSettings, install_websocket

MARKET = "TATA_INR"


def market_spec() -> MarketSpec:
    return make_market_spec(MARKET, "0.01", "1", {"TATA": Asset("TATA", 2), "INR": Asset("INR", 2)})


def build_app(engine: Engine, settings: WsSettings) -> Sanic:
    app = Sanic(f"ws_test_{id(engine)}")
    app.config.ACCESS_LOG = False
    # dev mode: streams are private to the `?user_id=` of the connection (these tests are about streaming)
    install(app, Authenticator(engine, dev=True))
    install_websocket(app, engine, settings)

    @app.post("/_test/command")
    async def command(request: Request) -> HTTPResponse:
        body: dict[str, Any] = request.json
        spec = engine.markets[body.get("market", MARKET)]
        kind = body["type"]
        if kind == "deposit":
            asset = engine.assets[body["asset"]]
            cmd: Any = engine.new(
                Deposit,
                user_id=str(body["user_id"]),
                asset=asset.symbol,
                amount=asset.parse_amount(body["amount"]),
                txn_id=body.get("txn_id") or f"t{time.time_ns()}",
            )
        elif kind == "place":
            order_type = OrderType(body.get("order_type", "limit"))
            cmd = engine.new(
                PlaceOrder,
                user_id=str(body["user_id"]),
                market=spec.symbol,
                side=Side(body["side"]),
                order_type=order_type,
                time_in_force=TimeInForce(body.get("time_in_force", "GTC")),
                price=spec.parse_price(body["price"]) if order_type is OrderType.LIMIT else None,
                quantity=spec.parse_quantity(body["quantity"]),
                client_order_id=body.get("client_order_id"),
            )
        elif kind == "cancel":
            cmd = engine.new(
                CancelOrder, user_id=str(body["user_id"]), market=spec.symbol, order_id=int(body["order_id"])
            )
        elif kind == "depth":
            cmd = engine.new(GetDepth, market=spec.symbol, limit=int(body.get("limit", 1000)))
        else:
            return json({"error": f"unknown type {kind}"}, status=400)
        reply: Reply = await engine.request(cmd)
        out: dict[str, Any] = {"code": int(reply.code), "message": reply.message, "seq": cmd.seq}
        if kind == "depth" and reply.ok:
            depth = reply.expect(Depth)
            bids, asks, update_id = list(depth.bids), list(depth.asks), depth.update_id
            fp, fq = spec.format_price, spec.format_quantity
            out["bids"] = [[fp(p), fq(q)] for p, q in bids]
            out["asks"] = [[fp(p), fq(q)] for p, q in asks]
            out["lastUpdateId"] = update_id
        return json(out)

    @app.post("/_test/produce")
    async def produce(request: Request) -> HTTPResponse:
        body: dict[str, Any] = request.json
        thread = threading.Thread(
            target=produce_trades,
            args=(engine, float(body["rate"]), float(body["seconds"])),
            name="trade-producer",
            daemon=True,
        )
        thread.start()
        return json({"started": True})

    @app.get("/_test/stats")
    async def stats(request: Request) -> HTTPResponse:
        hub = request.app.ctx.ws_hub
        return json(
            {
                "connections": len(hub.connections),
                "messages_encoded": hub.messages_encoded,
                "overflows": hub.overflows,
                "open_orders_known": len(hub.renderer.open_orders),
            }
        )

    return app


def produce_trades(engine: Engine, rate: float, seconds: float, tick: float = 0.005) -> None:
    """Make `rate` trades per second: each is a resting sell of 1 lot met by an IOC buy of 1 lot."""
    spec = engine.markets[MARKET]
    for user in ("maker", "taker"):
        for asset in ("TATA", "INR"):
            engine.call(engine.new(Deposit, user_id=user, asset=asset, amount=10**14, txn_id=f"{user}-{asset}-{rate}"))
    price = spec.parse_price("100.00")
    total = int(rate * seconds)
    start = time.monotonic()
    made = 0
    ignore = lambda reply: None  # noqa: E731
    while made < total:
        due = min(total, int((time.monotonic() - start) * rate)) - made
        for _ in range(max(0, due)):
            engine.submit(
                engine.new(
                    PlaceOrder,
                    user_id="maker",
                    market=MARKET,
                    side=Side.SELL,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.GTC,
                    price=price,
                    quantity=1,
                ),
                ignore,
            )
            engine.submit(
                engine.new(
                    PlaceOrder,
                    user_id="taker",
                    market=MARKET,
                    side=Side.BUY,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.IOC,
                    price=price,
                    quantity=1,
                ),
                ignore,
            )
        made += max(0, due)
        time.sleep(tick)


def main(argv: list[str] | None = None) -> int:
    defaults = WsSettings()
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--send-queue-limit", type=int, default=defaults.send_queue_limit)
    parser.add_argument("--max-subscriptions", type=int, default=defaults.max_subscriptions_per_connection)
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections)
    parser.add_argument("--max-message-bytes", type=int, default=defaults.max_message_bytes)
    parser.add_argument(
        "--max-connections-per-address",
        type=int,
        default=None,
        help="default: no limit (tests and the benchmark connect from one address)",
    )
    parser.add_argument("--idle-seconds", type=float, default=defaults.idle_seconds_before_subscribe)
    parser.add_argument("--ping-interval", type=float, default=defaults.ping_interval)
    parser.add_argument("--ping-timeout", type=float, default=defaults.ping_timeout)
    parser.add_argument(
        "--socket-send-buffer",
        type=int,
        default=0,
        help="SO_SNDBUF of the listening socket, inherited by connections (0: kernel autotuning)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    sys.setswitchinterval(0.0005)
    settings = WsSettings(
        max_subscriptions_per_connection=args.max_subscriptions,
        max_message_bytes=args.max_message_bytes,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address or 10**6,
        idle_seconds_before_subscribe=args.idle_seconds,
        send_queue_limit=args.send_queue_limit,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    )
    engine = Engine().start([market_spec()])
    try:
        app = build_app(engine, settings)
        if args.socket_send_buffer:
            # A small fixed kernel buffer makes a client that stops reading back up within kilobytes.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.socket_send_buffer)
            sock.bind((args.host, args.port))
            app.run(sock=sock, single_process=True, access_log=False, debug=False, motd=False)
        else:
            app.run(host=args.host, port=args.port, single_process=True, access_log=False, debug=False, motd=False)
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
