"""The HTTP ceiling: a minimal Sanic app that speaks the order endpoints of the REST API and does nothing else.

    .venv/bin/python -m bench.http_ceiling_server --port 8100 [--bare]

Single process, bound to 127.0.0.1. POST /api/v1/order parses the JSON body with ujson, checks the
fields the exchange needs and answers a JSON object of the same shape and size as the exchange's
order result (a resting order, no fills). DELETE /api/v1/order and POST /api/v1/onramp answer
trivially; GET /api/v1/health says ok. What `bench.http_load` measures against this server is what
Sanic alone costs per request on this machine: the exchange can approach it, never pass it.

`--bare` turns off Sanic's automatic loading of sanic-ext (installed in this venv, and loaded by the
exchange), to show what the extension costs per request.
"""

from __future__ import annotations

import argparse
import itertools

import ujson
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json


def create_app(*, bare: bool = False) -> Sanic:
    app = Sanic("openbell_ceiling")
    app.config.REQUEST_MAX_SIZE = 16 * 1024
    app.config.FALLBACK_ERROR_FORMAT = "json"
    if bare:
        app.config.AUTO_EXTEND = False
    ids = itertools.count(1)

    def body_of(request: Request) -> dict:
        try:
            data = ujson.loads(request.body or b"")
        except (ValueError, TypeError):
            return {}
        return data if isinstance(data, dict) else {}

    def bad(message: str) -> HTTPResponse:
        return json({"code": 1001, "message": message}, status=400)

    @app.post("/api/v1/order")
    async def place_order(request: Request) -> HTTPResponse:
        data = body_of(request)
        market = data.get("market")
        quantity = data.get("quantity")
        if not isinstance(market, str) or not isinstance(quantity, str) or data.get("side") not in ("buy", "sell"):
            return bad("market, side and quantity are required")
        if not isinstance(data.get("user_id"), str):
            return bad("user_id is required")
        return json(
            {
                "orderId": str(next(ids)),
                "market": market,
                "status": "NEW",
                "executedQty": "0",
                "remainingQty": quantity,
                "fills": [],
            }
        )

    @app.delete("/api/v1/order")
    async def cancel_order(request: Request) -> HTTPResponse:
        data = body_of(request)
        return json(
            {
                "orderId": str(data.get("orderId", "0")),
                "market": str(data.get("market", "")),
                "status": "CANCELED",
                "executedQty": "0",
                "remainingQty": "0",
            }
        )

    @app.post("/api/v1/onramp")
    async def onramp(request: Request) -> HTTPResponse:
        data = body_of(request)
        return json(
            {
                "user_id": str(data.get("user_id", "")),
                "asset": str(data.get("asset", "")),
                "amount": str(data.get("amount", "0")),
                "txnId": str(data.get("txnId", "")),
                "status": "credited",
            }
        )

    @app.get("/api/v1/health")
    async def health(request: Request) -> HTTPResponse:
        return json({"status": "ok"})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_ceiling_server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bare", action="store_true", help="do not auto-load sanic-ext")
    args = parser.parse_args(argv)
    create_app(bare=args.bare).run(
        host=args.host, port=args.port, single_process=True, access_log=False, debug=False, motd=False
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
