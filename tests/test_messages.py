"""Every message's fields, pinned: names and order are the wire format of the journal and of Redis.

A record is encoded as `[ClassName, field, ...]` by position (see `openbell.core.types.Record`), so adding,
removing or reordering a field changes what old journals and other processes mean. Such a change must show
up here, be deliberate, and come with a new journal format or wire version. Every `Record` subclass in the
package must be in the table, so a new message cannot slip in unpinned.
"""

from __future__ import annotations

import importlib
import pathlib
from decimal import Decimal

import msgspec
import pytest

from openbell.core import wire
from openbell.core.commands import CancelOrder, PlaceOrder, SetMarketStatus
from openbell.core.events import (
    BalanceChanged,
    DepthUpdated,
    MarketStatusChanged,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from openbell.core.grid import Asset, MarketSpec
from openbell.core.messages import CommandBatch, Depth, MatchBatch, Outcome, Reply, Settlement
from openbell.core.types import MarketStatus, OrderType, Record, ResultCode, Side, TimeInForce

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("core", "actors", "edge", "durability", "history", "cluster", "http", "ws")

PINNED: dict[str, tuple[str, ...]] = {
    # core.grid
    "Asset": ("symbol", "decimals"),
    "MarketSpec": ("symbol", "base", "quote", "tick_size", "lot_size", "maker_fee_bps", "taker_fee_bps",
                   "base_units_per_lot", "quote_units_per_tick_lot", "tick_parts", "lot_parts", "status"),
    # core.commands
    "PlaceOrder": ("seq", "ts", "user_id", "market", "side", "order_type", "time_in_force", "price", "quantity",
                   "quote_quantity", "post_only", "client_order_id", "stp", "request_id", "stop_price"),
    "CancelOrder": ("seq", "ts", "user_id", "market", "order_id", "request_id"),
    "Deposit": ("seq", "ts", "user_id", "asset", "amount", "txn_id", "request_id"),
    "AddMarket": ("seq", "ts", "spec", "request_id"),
    "SetMarketStatus": ("seq", "ts", "market", "status", "request_id"),
    "GetBalances": ("seq", "ts", "user_id"),
    "GetOpenOrders": ("seq", "ts", "user_id", "market"),
    "GetDepth": ("seq", "ts", "market", "limit"),
    "GetTrades": ("seq", "ts", "market", "limit"),
    "GetTicker": ("seq", "ts", "market"),
    "GetKlines": ("seq", "ts", "market", "interval_seconds", "start", "end"),
    "GetTradeHistory": ("seq", "ts", "market", "start_ms", "end_ms", "limit"),
    "GetKlineHistory": ("seq", "ts", "market", "interval_seconds", "start", "end", "limit"),
    "CreateApiKey": ("seq", "ts", "api_key", "user_id", "permissions", "request_id"),
    "RevokeApiKey": ("seq", "ts", "api_key", "request_id"),
    "GetApiKeys": ("seq", "ts", "user_id", "api_key"),
    "GetOrderHistory": ("seq", "ts", "market", "user_id", "order_id", "client_order_id", "from_order_id", "start_ms",
                        "end_ms", "limit"),
    "GetUserTrades": ("seq", "ts", "market", "user_id", "order_id", "from_trade_id", "start_ms", "end_ms", "limit"),
    # core.events
    "OrderAccepted": ("market", "order_id", "user_id", "side", "order_type", "time_in_force", "price", "quantity",
                      "quote_quantity", "client_order_id", "ts", "stop_price"),
    "OrderTriggered": ("market", "order_id", "user_id", "stop_price", "last_price", "ts"),
    "OrderRejected": ("market", "order_id", "user_id", "code", "reason", "ts", "client_order_id"),
    "CancelRejected": ("market", "order_id", "user_id", "code", "reason", "ts"),
    "TradeExecuted": ("market", "trade_id", "price", "quantity", "taker_side", "maker_order_id", "maker_user_id",
                      "taker_order_id", "taker_user_id", "ts"),
    "OrderPartiallyFilled": ("market", "order_id", "user_id", "filled_quantity", "remaining_quantity", "ts"),
    "OrderFilled": ("market", "order_id", "user_id", "filled_quantity", "ts"),
    "OrderCanceled": ("market", "order_id", "user_id", "filled_quantity", "remaining_quantity", "ts"),
    "OrderExpired": ("market", "order_id", "user_id", "filled_quantity", "remaining_quantity", "reason", "ts"),
    "BalanceChanged": ("user_id", "asset", "available", "locked", "ts", "change_id"),
    "Deposited": ("user_id", "asset", "amount", "txn_id", "ts"),
    "MarketAdded": ("spec", "ts"),
    "DepthUpdated": ("market", "first_update_id", "last_update_id", "bids", "asks", "ts"),
    "MarketStatusChanged": ("market", "status", "ts"),
    "Ticker": ("market", "first_price", "last_price", "high", "low", "volume", "quote_volume", "trades",
               "window_start", "window_end"),
    "KlineSnapshot": ("market", "interval", "start", "end", "open", "high", "low", "close", "volume",
                      "quote_volume", "trades", "closed"),
    # core.summary
    "OrderSummary": ("order_id", "status", "executed_quantity", "remaining_quantity", "fills", "code", "reason"),
    "OpenOrderView": ("order_id", "market", "side", "order_type", "price", "quantity", "filled", "ts",
                      "client_order_id", "stop_price", "triggered"),
    "OriginalOrder": ("market", "summary"),
    "OrderRecord": ("order_id", "market", "side", "order_type", "time_in_force", "price", "quantity", "quote_quantity",
                    "client_order_id", "ts", "status", "filled", "executed_quote", "updated", "stop_price"),
    # core.messages
    "CommandBatch": ("commands",),
    "MatchBatch": ("market", "commands", "batch_no"),
    "Outcome": ("seq", "events"),
    "Settlement": ("market", "outcomes", "failed", "batch_no"),
    "DepositResult": ("credited",),
    "Balances": ("assets",),
    "OpenOrders": ("orders",),
    "Depth": ("bids", "asks", "update_id"),
    "RecentTrades": ("trades",),
    "UserTrades": ("trades",),
    "OrderHistory": ("orders",),
    "Klines": ("candles",),
    "AlreadyApplied": ("seq",),
    "ApiKeyView": ("api_key", "user_id", "permissions", "created_ms"),
    "ApiKeys": ("keys",),
    "Reply": ("seq", "code", "message", "events", "data"),
    # durability
    "Matched": ("market", "batch_no"),
    "Settled": ("market", "batch_no"),
    "Durable": ("lsn",),
    # cluster
    "RoutedCommand": ("request_id", "reply_to", "deadline_ms", "command"),
    "CommandEntry": ("commands",),
    "RoutedReply": ("request_id", "reply"),
    "ReplyBatch": ("replies",),
    "EventBatch": ("events",),
    "MarketListed": ("spec", "shard"),
    "SettlementEntry": ("settlements",),
    # the sharded layout (cluster/shard.py, durability/split.py)
    "HostMarket": ("spec",),
    "MatchEntry": ("items",),
    "BatchMatched": ("settlement", "events"),
    "CaptureState": (),
    # actors (never leave the process, pinned all the same)
    "Wake": (),
}  # fmt: skip


def every_record() -> dict[str, type[Record]]:
    """Every Record subclass defined in the package (all its modules imported)."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(("openbell", *path.relative_to(ROOT).with_suffix("").parts))
            importlib.import_module(module.removesuffix(".__init__"))
    found: dict[str, type[Record]] = {}
    pending = list(Record.__subclasses__())
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if kind.__module__.startswith("openbell."):
            found[kind.__name__] = kind
    return found


def test_every_record_is_pinned_and_nothing_pinned_is_gone() -> None:
    assert set(every_record()) == set(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_record_has_exactly_its_pinned_fields_in_order(name: str) -> None:
    kind = every_record()[name]

    assert kind.__struct_fields__ == PINNED[name]
    assert kind.__struct_config__.tag == name  # the tag on the wire is the class name


SPEC = MarketSpec("TATA_INR", Asset("TATA", 2), Asset("INR", 2), Decimal("0.01"), Decimal("1"))
ORDER = PlaceOrder(7, 1_700_000_000_000, "alice", "TATA_INR", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 10_000, 3)
STOP = PlaceOrder(
    8, 1, "bob", "TATA_INR", Side.SELL, OrderType.STOP_LOSS_LIMIT, TimeInForce.GTC, 9_000, 2, stop_price=9_500
)
SAMPLES = [
    SPEC,
    ORDER,
    STOP,
    OrderTriggered("TATA_INR", 8, "bob", 9_500, 9_400, 1),
    SPEC.with_status(MarketStatus.HALTED),
    SetMarketStatus(9, 1, "TATA_INR", MarketStatus.CANCEL_ONLY, "api:2"),
    MarketStatusChanged("TATA_INR", MarketStatus.HALTED, 1),
    CommandBatch((ORDER, CancelOrder(8, 1, "alice", "TATA_INR", 7, "api:1"))),
    MatchBatch("TATA_INR", (ORDER,), 3),
    Settlement(
        "TATA_INR",
        (Outcome(7, (TradeExecuted("TATA_INR", 1, 10_000, 3, Side.BUY, 5, "bob", 7, "alice", 1),)),),
        (),
        3,
    ),
    Reply(7, ResultCode.OK, "", (OrderRejected("TATA_INR", 7, "alice", ResultCode.INVALID_PRICE, "no", 1),)),
    Reply(9, ResultCode.OK, data=Depth(((10_000, 3),), (), 12)),
    DepthUpdated("TATA_INR", 1, 2, ((10_000, 0),), ((10_100, 4),), 1),
    BalanceChanged("alice", "INR", 10**40, 0, 1, 5),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda message: type(message).__name__)
def test_a_message_crosses_the_wire_and_comes_back_equal(message: Record) -> None:
    assert wire.decode(wire.encode(message), type(message)) == message
    assert wire.unpack(wire.pack(message), type(message)) == message


def test_a_message_of_another_wire_version_or_with_an_extra_field_is_refused() -> None:
    encoded = wire.encode(ORDER)
    other_version = bytes([wire.WIRE_VERSION + 1]) + encoded[1:]
    extra_field = wire.encode(["PlaceOrder", *msgspec.to_builtins(ORDER)[1:], "surplus"])

    with pytest.raises(wire.WireError, match="version"):
        wire.decode(other_version, PlaceOrder)
    with pytest.raises(wire.WireError):
        wire.decode(extra_field, PlaceOrder)
    with pytest.raises(wire.WireError):
        wire.decode(encoded[:-3], PlaceOrder)  # cut short
