"""The Binance API in the Redis deployment: ccxt clients of two API processes trade with each other, and
ccxt.pro watches through a WebSocket process; the same results as embedded."""

from __future__ import annotations

import asyncio

from binance_clients import BinanceKeys, pro_client, rest_client
from redis_server import redis_server  # noqa: F401  (fixture)
from test_binance_ccxt_pro import run, until
from test_cluster import Cluster, cluster, deposit  # noqa: F401  (fixture)
from test_shards import Sharded, sharded  # noqa: F401  (fixture)

SYMBOL = "TATA/INR"


def test_ccxt_clients_of_two_api_processes_trade_and_ccxt_pro_watches_through_a_ws_process(cluster: Cluster) -> None:  # noqa: F811
    cluster.engine()
    api_1, api_2 = cluster.api(), cluster.api()
    ws = cluster.ws()
    assert deposit(api_1, "seller", "TATA", "10", "s-1").status_code == 200
    assert deposit(api_2, "buyer", "INR", "1000", "b-1").status_code == 200
    base_1, base_2 = f"http://127.0.0.1:{api_1.port}", f"http://127.0.0.1:{api_2.port}"
    seller, buyer = rest_client(BinanceKeys(base_1), "seller"), rest_client(BinanceKeys(base_2), "buyer")
    ws_url = f"ws://127.0.0.1:{ws.port}/ws"

    ask = seller.create_order(SYMBOL, "limit", "sell", 5, 100)

    async def watch() -> tuple[dict, list]:
        watcher = pro_client(BinanceKeys(base_1), ws_url, "watcher")
        try:
            book = await watcher.watch_order_book(SYMBOL)
            assert book["asks"] == [[100, 5]]

            async def take(round_no: int) -> None:
                if round_no == 0:
                    await asyncio.to_thread(buyer.create_order, SYMBOL, "limit", "buy", 3, 101)

            trades = await until(lambda: watcher.watch_trades(SYMBOL), take, bool)
            for _ in range(400):  # at most 20 s
                if watcher.orderbooks[SYMBOL]["asks"] == [[100, 2]]:
                    break
                await asyncio.sleep(0.05)
            return dict(watcher.orderbooks[SYMBOL]), trades
        finally:
            await watcher.close()

    book, trades = run(watch())

    assert [(t["price"], t["amount"], t["side"]) for t in trades] == [(100, 3, "buy")]
    assert book["asks"] == [[100, 2]]
    for client in (seller, buyer):
        assert client.fetch_order_book(SYMBOL)["asks"] == [[100, 2]]
    order = buyer.fetch_my_trades(SYMBOL)
    assert [(t["side"], t["price"], t["amount"]) for t in order] == [("buy", 100, 3)]
    assert seller.fetch_order(ask["id"], SYMBOL)["filled"] == 3
    balance = buyer.fetch_balance()
    assert (balance["INR"]["free"], balance["TATA"]["free"]) == (700, 3)
    assert seller.cancel_order(ask["id"], SYMBOL)["status"] == "canceled"
    assert seller.fetch_balance()["TATA"]["free"] == 7


def test_ccxt_pro_watches_its_own_orders_through_the_websocket_api_of_a_ws_process(cluster: Cluster) -> None:  # noqa: F811
    # Arrange: the key is checked by the WebSocket process (through Redis, by the engine's key store).
    cluster.engine()
    api = cluster.api()
    ws = cluster.ws()
    assert deposit(api, "pro-seller", "TATA", "10", "ps-1").status_code == 200
    base, ws_url = f"http://127.0.0.1:{api.port}", f"ws://127.0.0.1:{ws.port}/ws"

    async def watch() -> tuple[list, str]:
        seller = pro_client(BinanceKeys(base), ws_url, "pro-seller")
        try:
            await seller.load_markets()
            orders = asyncio.ensure_future(seller.watch_orders(SYMBOL))
            await asyncio.sleep(0.5)
            # Act
            ask = await seller.create_order(SYMBOL, "limit", "sell", 4, 120)
            return await asyncio.wait_for(orders, 20), ask["id"]
        finally:
            await seller.close()

    orders, ask_id = run(watch())

    # Assert: the new ask, as the WebSocket process streamed it.
    assert [(o["id"], o["status"], o["side"], o["price"], o["amount"]) for o in orders] == [
        (ask_id, "open", "sell", 120, 4)
    ]


def test_orders_and_their_history_through_v3_when_markets_match_on_two_shards(sharded: Sharded) -> None:  # noqa: F811
    sharded.markets(0, "--no-fsync")
    sharded.markets(1, "--no-fsync")
    sharded.balance("--no-fsync")
    api = sharded.api()
    for user, asset, amount in (("seller", "AAA", "10"), ("seller", "BBB", "10"), ("buyer", "INR", "1000")):
        assert deposit(api, user, asset, amount, f"{user}-{asset}").status_code == 200
    base = f"http://127.0.0.1:{api.port}"
    seller, buyer = rest_client(BinanceKeys(base), "seller"), rest_client(BinanceKeys(base), "buyer")
    results = {}

    for symbol in ("AAA/INR", "BBB/INR"):  # shard 0, shard 1
        ask = seller.create_order(symbol, "limit", "sell", 4, 10)
        bid = buyer.create_order(symbol, "market", "buy", None, None, {"cost": 30})
        results[symbol] = (ask, bid)

    for symbol, (ask, bid) in results.items():
        assert bid["status"] == "closed" and bid["filled"] == 3 and bid["cost"] == 30
        assert buyer.fetch_order(bid["id"], symbol)["status"] == "closed"
        assert [(t["side"], t["amount"], t["order"]) for t in buyer.fetch_my_trades(symbol)] == [("buy", 3, bid["id"])]
        assert [(o["id"], o["status"], o["filled"]) for o in seller.fetch_orders(symbol)] == [(ask["id"], "open", 3)]
    balance = buyer.fetch_balance()
    assert (balance["INR"]["free"], balance["AAA"]["free"], balance["BBB"]["free"]) == (940, 3, 3)
