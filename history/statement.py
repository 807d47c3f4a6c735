"""`python run.py statement --user U --from DATE --to DATE`: a user's account statement from the history database.

For the period [from, to) (UTC; a `--to` date includes that whole day) it lists the user's deposits, trades
(with what each side paid, received and paid in fees) and orders (placed in the period, with their state at its
end), and per asset the balance at both ends, and checks that they reconcile exactly:

    opening + deposits + received - paid - fees = closing

Opening and closing come from the balance changes the engine published (the last one before each end); the
changes come from the deposits and trades, turned into amounts by the same function settlement uses
(`openbell.core.ledger.trade_amounts`) with the market's spec as it was listed. Both sides are the engine's own
records, so a statement that does not reconcile means history is missing something (events the database
refused, set aside in the data directory; or a period before the history kept deposits) and says so: exit
status 1. Every amount is an exact decimal string (no float anywhere); ids are strings, times ms.

A balance change carries the time of the commands whose effects it includes (`openbell.core.risk`), and
command times increase in the order the engine handles commands, so a cut at any millisecond puts each balance
change on the same side as the deposits and trades that made it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import pathlib
import sys
from typing import Any

import msgspec

from openbell.core.events import TradeExecuted
from openbell.core.grid import Asset, MarketSpec
from openbell.core.ledger import trade_amounts
from openbell.core.types import Side
from openbell.history.store import HistorySchemaError, HistoryStore, read_amount

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TERMINAL_STATUSES = ("FILLED", "CANCELED", "EXPIRED", "REJECTED")


class StatementError(Exception):
    """A statement that cannot be made (a one-line reason)."""


def parse_time(text: str, *, end: bool) -> int:
    """`YYYY-MM-DD` (UTC; for an end, the start of the next day) or an ISO date-time with an offset -> ms."""
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            if end:
                moment += dt.timedelta(days=1)
        else:
            moment = dt.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                raise StatementError(f"{text!r} has no UTC offset: write it as {text}Z or with +HH:MM")
    except ValueError:
        raise StatementError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Totals:
    __slots__ = ("deposits", "fees", "paid", "received")

    def __init__(self) -> None:
        self.deposits = self.received = self.paid = self.fees = 0


def build(store: HistoryStore, user_id: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The statement as JSON-able values (see the module docstring)."""
    if end_ms <= start_ms:
        raise StatementError("the period is empty: --to must be after --from")
    specs = {symbol: msgspec.json.decode(text, type=MarketSpec) for symbol, text in store.market_specs().items()}
    assets: dict[str, Asset] = {}
    for spec in specs.values():
        assets[spec.base.symbol], assets[spec.quote.symbol] = spec.base, spec.quote

    def asset(name: str) -> Asset:
        return assets.get(name) or Asset(name, 0)

    totals: dict[str, _Totals] = {}

    def total(name: str) -> _Totals:
        found = totals.get(name)
        if found is None:
            found = totals[name] = _Totals()
        return found

    deposits = []
    for txn_id, name, amount, ts in store.deposits(user_id, start_ms, end_ms):
        total(name).deposits += amount
        deposits.append({"time": ts, "txnId": txn_id, "asset": name, "amount": asset(name).format_amount(amount)})

    trades = []
    for market, trade_id, price, quantity, taker_side, maker_id, maker, taker_id, taker, ts in store.user_trades(
        user_id, start_ms, end_ms
    ):
        listed = specs.get(market)
        if listed is None:
            raise StatementError(
                f"the history database has no listing of market {market} (it was added before the history kept "
                "markets): its trades cannot be turned into amounts"
            )
        spec = listed
        trade = TradeExecuted(
            market, int(trade_id), int(price), int(quantity), Side(taker_side), maker_id, maker, taker_id, taker, ts
        )
        quote, base, buyer_fee, seller_fee = trade_amounts(spec, trade)
        buyer_is_taker = trade.taker_side is Side.BUY
        sides = []
        if maker == user_id:
            sides.append(("maker", Side.SELL if buyer_is_taker else Side.BUY, int(maker_id)))
        if taker == user_id:
            sides.append(("taker", trade.taker_side, int(taker_id)))
        for role, side, order_id in sides:
            base_asset, quote_asset = spec.base.symbol, spec.quote.symbol
            if side is Side.BUY:
                paid, paid_asset, received, received_asset, fee = quote, quote_asset, base, base_asset, buyer_fee
            else:
                paid, paid_asset, received, received_asset, fee = base, base_asset, quote, quote_asset, seller_fee
            total(paid_asset).paid += paid
            total(received_asset).received += received
            total(received_asset).fees += fee
            trades.append(
                {
                    "time": ts,
                    "market": market,
                    "tradeId": str(trade_id),
                    "orderId": str(order_id),
                    "side": side.value,
                    "role": role,
                    "price": spec.format_price(trade.price),
                    "quantity": spec.format_quantity(trade.quantity),
                    "paid": asset(paid_asset).format_amount(paid),
                    "paidAsset": paid_asset,
                    "received": asset(received_asset).format_amount(received),
                    "receivedAsset": received_asset,
                    "fee": asset(received_asset).format_amount(fee),
                    "feeAsset": received_asset,
                }
            )

    orders = _orders(store, user_id, start_ms, end_ms, specs)
    opening = store.balances_before(user_id, start_ms)
    closing = store.balances_before(user_id, end_ms)
    balances = {}
    reconciled = True
    for name in sorted(set(opening) | set(closing) | set(totals)):
        kind = asset(name)
        start_available, start_locked = opening.get(name, (0, 0))
        end_available, end_locked = closing.get(name, (0, 0))
        moved = totals.get(name) or _Totals()
        expected = start_available + start_locked + moved.deposits + moved.received - moved.paid - moved.fees
        ok = expected == end_available + end_locked
        reconciled = reconciled and ok
        balances[name] = {
            "opening": {
                "available": kind.format_amount(start_available),
                "locked": kind.format_amount(start_locked),
                "total": kind.format_amount(start_available + start_locked),
            },
            "deposits": kind.format_amount(moved.deposits),
            "received": kind.format_amount(moved.received),
            "paid": kind.format_amount(moved.paid),
            "fees": kind.format_amount(moved.fees),
            "closing": {
                "available": kind.format_amount(end_available),
                "locked": kind.format_amount(end_locked),
                "total": kind.format_amount(end_available + end_locked),
            },
            "openingPlusChanges": kind.format_amount(expected),
            "reconciled": ok,
        }
    return {
        "user": user_id,
        "from": _iso(start_ms),
        "to": _iso(end_ms),
        "fromMs": start_ms,
        "toMs": end_ms,
        "reconciled": reconciled,
        "balances": balances,
        "deposits": deposits,
        "trades": trades,
        "orders": orders,
    }


def _orders(
    store: HistoryStore, user_id: str, start_ms: int, end_ms: int, specs: dict[str, MarketSpec]
) -> list[dict[str, Any]]:
    """Orders placed in the period (accepted, and refused at once), each with its state at the period's end."""
    state: dict[int, tuple[Any, ...]] = {}
    rejected: dict[int, tuple[Any, ...]] = {}
    for row in store.user_order_events(user_id, start_ms, end_ms):
        order_id, _, status, filled, _, _, ts = row
        key = (int(ts), int(filled), status in TERMINAL_STATUSES)
        known = state.get(int(order_id))
        if known is None or key >= (int(known[6]), int(known[3]), known[2] in TERMINAL_STATUSES):
            state[int(order_id)] = row
        if status == "REJECTED":
            rejected[int(order_id)] = row
    out = []
    accepted = set()
    for market, order_id, side, order_type, tif, price, quantity, quote_quantity, coid, ts in store.user_orders(
        user_id, start_ms, end_ms
    ):
        order_id = int(order_id)
        accepted.add(order_id)
        spec = specs.get(market)
        last = state.get(order_id)
        status, filled, remaining = ("NEW", 0, quantity) if last is None else (last[2], last[3], last[4])
        fmt_q = spec.format_quantity if spec is not None else str
        out.append(
            {
                "time": int(ts),
                "orderId": str(order_id),
                "market": market,
                "side": side,
                "type": order_type,
                "timeInForce": tif,
                "price": None if price is None else (spec.format_price(int(price)) if spec else str(price)),
                "quantity": None if quantity is None else fmt_q(int(quantity)),
                "quoteQuantity": None
                if quote_quantity is None
                else (spec.quote.format_amount(read_amount(quote_quantity)) if spec else str(quote_quantity)),
                "clientOrderId": coid,
                "status": status,
                "filled": fmt_q(int(filled)),
                "remaining": None if remaining is None else fmt_q(int(remaining)),
            }
        )
    for order_id, (_, market, status, _, _, reason, ts) in rejected.items():
        if order_id not in accepted:
            out.append({"time": int(ts), "orderId": str(order_id), "market": market, "status": status, "reason": reason})
    out.sort(key=lambda order: (order["time"], int(order["orderId"])))
    return out


# --------------------------------------------------------------------------------------------- output
CSV_COLUMNS = ("section", "time", "asset", "amount", "reference", "market", "side", "price", "quantity", "status")


def to_csv(statement: dict[str, Any]) -> str:
    """One row per balance, per signed change of an asset (a deposit; a trade's paid, received and fee legs) and
    per order: per asset, the `amount`s of its `opening`, `deposit`, `trade` and `fee` rows add up to its
    `closing` row exactly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    start, end = statement["fromMs"], statement["toMs"]
    for name, balance in statement["balances"].items():
        writer.writerow(("opening", start, name, balance["opening"]["total"], "", "", "", "", "", ""))
    for deposit in statement["deposits"]:
        writer.writerow(("deposit", deposit["time"], deposit["asset"], deposit["amount"], deposit["txnId"], "", "", "", "", ""))
    for trade in statement["trades"]:
        reference = f"trade {trade['tradeId']} order {trade['orderId']}"
        common = (trade["market"], trade["side"], trade["price"], trade["quantity"], trade["role"])
        writer.writerow(("trade", trade["time"], trade["paidAsset"], "-" + trade["paid"], reference, *common))
        writer.writerow(("trade", trade["time"], trade["receivedAsset"], trade["received"], reference, *common))
        if trade["fee"].strip("0.") != "":
            writer.writerow(("fee", trade["time"], trade["feeAsset"], "-" + trade["fee"], reference, *common))
    for name, balance in statement["balances"].items():
        writer.writerow(("closing", end, name, balance["closing"]["total"], "", "", "", "", "", ""))
    for order in statement["orders"]:
        writer.writerow(
            (
                "order",
                order["time"],
                "",
                "",
                f"order {order['orderId']}",
                order["market"],
                order.get("side", ""),
                order.get("price") or "",
                order.get("quantity") or "",
                order["status"],
            )
        )
    return out.getvalue()


def main(args: argparse.Namespace) -> int:
    """`run.py statement`: 0 if the statement reconciles, 1 if it does not, 2 if it cannot be made."""
    try:
        start_ms = parse_time(args.start, end=False)
        end_ms = parse_time(args.end, end=True)
        url = args.db
        if url is None:
            path = pathlib.Path(args.data_dir) / "history.sqlite3"
            if not path.exists():
                raise StatementError(f"no history database at {path}: give --data-dir or --db")
            url = f"sqlite:///{path}"
        elif url.startswith("sqlite:") and not pathlib.Path(url.removeprefix("sqlite:///").removeprefix("sqlite://")).exists():
            raise StatementError(f"no history database at {url}")
        try:
            store = HistoryStore(url)
        except HistorySchemaError as error:
            raise StatementError(str(error)) from None
        except Exception as error:
            if type(error).__module__.startswith(("psycopg", "sqlite3")):
                raise StatementError(f"the history database does not answer: {error}".replace("\n", " ").strip()) from None
            raise
        try:
            statement = build(store, args.user, start_ms, end_ms)
        finally:
            store.close()
    except StatementError as error:
        print(f"openbell statement: {error}", file=sys.stderr)
        return 2
    if args.format == "csv":
        text = to_csv(statement)
    else:
        text = msgspec.json.format(msgspec.json.encode(statement), indent=2).decode() + "\n"
    if args.out:
        pathlib.Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    if not statement["reconciled"]:
        off = [name for name, balance in statement["balances"].items() if not balance["reconciled"]]
        print(
            f"openbell statement: does not reconcile for {', '.join(off)}: history is missing events "
            "(see `python run.py inspect` for events set aside)",
            file=sys.stderr,
        )
        return 1
    return 0
