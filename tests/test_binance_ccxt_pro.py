"""Binance-style WebSocket streams as unmodified ccxt.pro uses them (`/ws/<n>`, SUBSCRIBE), against the real
embedded server; and the raw protocol (`/stream`, errors) with a plain WebSocket client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt.pro
import pytest
import websockets
from binance_clients import BinanceKeys, deposit, pro_client
from conftest import RunningServer
from test_binance_ccxt import add_market

T = TypeVar("T")
ROUNDS = 20


@pytest.fixture(scope="module")
def keys(exchange: RunningServer) -> BinanceKeys:
    return BinanceKeys(exchange.base_url)


def run(coroutine: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


class ProVenue:
    """A market of its own, a funded maker and taker (ccxt.pro clients, REST through their async methods)."""

    def __init__(self, exchange: RunningServer, keys: BinanceKeys) -> None:
        self.symbol = add_market(exchange.base_url)
        self.base = self.symbol.split("/")[0]
        self.base_url = exchange.base_url
        self.ws_url = exchange.ws_url
        self.keys = keys

    def client(self, name: str) -> ccxt.pro.binance:
        user = f"{self.base.lower()}-{name}"
        deposit(self.base_url, user, "INR", "100000", f"{user}-inr")
        deposit(self.base_url, user, self.base, "1000", f"{user}-base")
        return pro_client(self.keys, self.ws_url, user)


async def until(
    watch: Callable[[], Awaitable[T]], act: Callable[[int], Awaitable[Any]], done: Callable[[T], bool]
) -> T:
    """Watch while acting once per round until `done` holds for what the watch returned (at most ROUNDS)."""
    watcher = asyncio.ensure_future(watch())
    for round_no in range(ROUNDS):
        await act(round_no)
        finished, _ = await asyncio.wait({watcher}, timeout=0.5)
        if finished:
            value = watcher.result()
            if done(value):
                return value
            watcher = asyncio.ensure_future(watch())
    watcher.cancel()
    raise AssertionError(f"the watch did not see what was expected in {ROUNDS} rounds")


def test_watch_order_book_stays_equal_to_the_rest_book_while_orders_stream_in(
    exchange: RunningServer, keys: BinanceKeys
) -> None:
    venue = ProVenue(exchange, keys)

    async def scenario() -> tuple[dict, dict]:
        watcher, maker, taker = venue.client("watcher"), venue.client("maker"), venue.client("taker")
        try:
            await maker.load_markets()
            await maker.create_order(venue.symbol, "limit", "buy", 1, 90)
            first = await watcher.watch_order_book(venue.symbol)
            assert first["bids"] == [[90, 1]]
            # Orders stream in: resting, crossing, canceled.
            placed = []
            for i in range(10):
                placed.append(await maker.create_order(venue.symbol, "limit", "sell", 1 + i % 3, 100 + i))
                await maker.create_order(venue.symbol, "limit", "buy", 0.5, 80 + i)
            await maker.cancel_order(placed[3]["id"], venue.symbol)
            await taker.create_order(venue.symbol, "market", "buy", 2)
            rest = await maker.fetch_order_book(venue.symbol, 1000)
            # A watch returns at the next update; the book it keeps follows every update in the background.
            watched = watcher.orderbooks[venue.symbol]
            for _ in range(400):  # at most 20 s
                if watched["nonce"] >= rest["nonce"]:
                    break
                await asyncio.sleep(0.05)
            return {"nonce": watched["nonce"], **watched.limit()}, rest
        finally:
            for client in (watcher, maker, taker):
                await client.close()

    watched, rest = run(scenario())

    assert watched["nonce"] == rest["nonce"]
    assert watched["bids"] == rest["bids"] and watched["asks"] == rest["asks"]
    assert watched["asks"][0] == [101, 1]  # 100 x 1 and 1 of 101 x 2 bought, 103 canceled


def test_watch_trades_ohlcv_and_ticker_follow_trades_between_two_users(
    exchange: RunningServer, keys: BinanceKeys
) -> None:
    venue = ProVenue(exchange, keys)

    async def scenario() -> tuple[list, list, dict]:
        watcher, seller, buyer = venue.client("watcher"), venue.client("seller"), venue.client("buyer")
        try:
            await seller.load_markets()
            await buyer.load_markets()

            async def trade(round_no: int) -> None:
                await seller.create_order(venue.symbol, "limit", "sell", 1, 60)
                await buyer.create_order(venue.symbol, "limit", "buy", 1, 60)

            trades = await until(lambda: watcher.watch_trades(venue.symbol), trade, bool)
            candles = await until(lambda: watcher.watch_ohlcv(venue.symbol, "1m"), trade, bool)
            ticker = await until(lambda: watcher.watch_ticker(venue.symbol), trade, lambda t: t["last"] is not None)
            return trades, candles, ticker
        finally:
            for client in (watcher, seller, buyer):
                await client.close()

    trades, candles, ticker = run(scenario())

    assert [(t["price"], t["amount"], t["side"]) for t in trades][:1] == [(60, 1, "buy")]
    assert candles[-1][1:5] == [60, 60, 60, 60] and candles[-1][5] >= 1
    assert ticker["symbol"] == venue.symbol and ticker["last"] == 60 and ticker["baseVolume"] >= 1


def test_watch_orders_my_trades_and_balance_follow_a_users_own_order_through_the_websocket_api(
    exchange: RunningServer, keys: BinanceKeys
) -> None:
    # Arrange: a seller watching its own orders and balance (ccxt.pro subscribes through /ws-api/v3 with
    # userDataStream.subscribe.signature, signed with the seller's real key), and a buyer.
    venue = ProVenue(exchange, keys)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], str]:
        seller, buyer = venue.client("ws-api-seller"), venue.client("ws-api-buyer")
        try:
            await seller.load_markets()
            await buyer.load_markets()
            # Each watch is started before what it waits for: ccxt.pro hands a watch only what arrives after it.
            orders_watch = asyncio.ensure_future(seller.watch_orders(venue.symbol))
            balance_watch = asyncio.ensure_future(seller.watch_balance())
            trades_watch = asyncio.ensure_future(seller.watch_my_trades(venue.symbol))
            await asyncio.sleep(0.5)  # subscribed (one connection, one subscription)
            # Act: the seller's ask, then the buyer takes all of it.
            ask = await seller.create_order(venue.symbol, "limit", "sell", 2, 70)
            await asyncio.wait_for(orders_watch, 10)  # its NEW report
            await asyncio.wait_for(balance_watch, 10)  # its hold
            await buyer.create_order(venue.symbol, "limit", "buy", 2, 70)
            trades = await asyncio.wait_for(trades_watch, 10)  # the fill
            # The reports that follow update ccxt.pro's caches: wait (bounded) for the order's end and the balance.
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline:
                orders = [dict(o) for o in (seller.orders or [])]
                spot = seller.balance.get("spot") or {}
                if any(o["id"] == ask["id"] and o["status"] == "closed" for o in orders) and (
                    spot.get(venue.base, {}).get("total") == 998
                ):
                    break
                await asyncio.sleep(0.05)
            return orders, trades, dict(spot), ask["id"]
        finally:
            for client in (seller, buyer):
                await client.close()

    orders, trades, balance, ask_id = run(scenario())

    # Assert: the ask, as the stream reported it, filled and closed at its price; a balance of the seller's.
    own = [o for o in orders if o["id"] == ask_id]
    assert own and own[-1]["status"] == "closed"
    assert (own[-1]["side"], own[-1]["price"], own[-1]["filled"], own[-1]["remaining"]) == ("sell", 70, 2, 0)
    assert [(t["order"], t["side"], t["price"], t["amount"], t["takerOrMaker"]) for t in trades] == [
        (ask_id, "sell", 70, 2, "maker")
    ]
    assert (balance[venue.base]["free"], balance[venue.base]["used"], balance[venue.base]["total"]) == (998, 0, 998)


def test_the_websocket_api_refuses_a_bad_signature_and_unknown_methods_in_binances_words(
    exchange: RunningServer, keys: BinanceKeys
) -> None:
    api_key, secret = keys.key_for("ws-api-refused")
    url = exchange.ws_url.removesuffix("/ws") + "/ws-api/v3"

    async def scenario() -> list[dict[str, Any]]:
        import hashlib
        import hmac
        import time

        timestamp = int(time.time() * 1000)
        payload = f"apiKey={api_key}&timestamp={timestamp}"
        good = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        requests = [
            {"id": 1, "method": "userDataStream.subscribe.signature",
             "params": {"apiKey": api_key, "timestamp": timestamp, "signature": "0" * 64}},
            {"id": 2, "method": "userDataStream.subscribe.signature",
             "params": {"apiKey": "no-such-key", "timestamp": timestamp, "signature": good}},
            {"id": 3, "method": "order.place", "params": {}},
            {"id": 4, "method": "userDataStream.unsubscribe"},
            {"id": 5, "method": "userDataStream.subscribe.signature",
             "params": {"apiKey": api_key, "timestamp": timestamp - 3_600_000,
                        "signature": hmac.new(secret.encode(), f"apiKey={api_key}&timestamp={timestamp - 3_600_000}".encode(), hashlib.sha256).hexdigest()}},
            {"id": 6, "method": "userDataStream.subscribe.signature",
             "params": {"apiKey": api_key, "timestamp": timestamp, "signature": good}},
            {"id": 7, "method": "session.subscriptions"},
            {"id": 8, "method": "userDataStream.unsubscribe"},
            {"id": 9, "method": "session.subscriptions"},
        ]  # fmt: skip
        answers = []
        async with websockets.connect(url, open_timeout=10) as ws:
            for request in requests:
                await ws.send(json.dumps(request))
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            await ws.send("not json")
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return answers

    answers = run(scenario())

    codes = [(a["id"], a["status"], a.get("error", {}).get("code")) for a in answers]
    assert codes == [
        (1, 400, -1022),  # bad signature
        (2, 401, -2014),  # unknown key
        (3, 400, -1020),  # not a method served here
        (4, 400, -2035),  # nothing to unsubscribe
        (5, 400, -1021),  # an hour-old timestamp
        (6, 200, None),
        (7, 200, None),
        (8, 200, None),
        (9, 200, None),
        (None, 400, -1100),  # not JSON
    ]
    assert answers[5]["result"] == {"subscriptionId": 0}
    assert answers[6]["result"] == [{"subscriptionId": 0}] and answers[8]["result"] == []


def test_combined_streams_wrap_each_message_and_bad_requests_change_nothing(
    exchange: RunningServer, keys: BinanceKeys
) -> None:
    venue = ProVenue(exchange, keys)
    stream = venue.symbol.replace("/", "").lower() + "@trade"

    async def scenario() -> list[Any]:
        trader = venue.client("trader")
        try:
            await trader.load_markets()
            async with websockets.connect(f"ws://127.0.0.1:{exchange.port}/stream?streams={stream}") as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nosuchinr@trade"], "id": 1}))
                await ws.send("not json")
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
                replies = [json.loads(await ws.recv()) for _ in range(3)]
                await trader.create_order(venue.symbol, "limit", "sell", 1, 70)
                await trader.create_order(
                    venue.symbol, "limit", "buy", 1, 70, {"selfTradePreventionMode": "EXPIRE_TAKER"}
                )
                # Self-trade prevention let nothing trade; a second user takes the ask.
                other = venue.client("other")
                try:
                    await other.create_order(venue.symbol, "limit", "buy", 1, 70)
                finally:
                    await other.close()
                replies.append(json.loads(await ws.recv()))
                return replies
        finally:
            await trader.close()

    unknown, malformed, listed, message = run(scenario())

    assert unknown["id"] == 1 and unknown["error"]["code"] == 2
    assert malformed["error"]["code"] == 3 and malformed["id"] is None
    assert listed == {"result": [stream], "id": 2}
    assert message["stream"] == stream
    assert message["data"]["e"] == "trade" and message["data"]["p"] == "70.0" and message["data"]["q"] == "1.0"
