"""Fills and the balance check: what each of the simulator's users must hold at the end.

Each user's fills come from its private stream `orders@<user>` (`fill` messages: one per side the user traded
on, with the trade id, its order id, price, quantity and whether it made or took), whichever way the connection
was made that user's (a listen key with API keys on, `?user_id=` in dev mode). The check, in integer minor units
per asset:

    held (available + locked) = held at start + deposits
                                + for each buy fill:  base received - fee on it, - quote paid
                                + for each sell fill: quote received - fee on it, - base given

with the fee `floor(received x bps / 10000)` per fill at the market's maker or taker rate (what the exchange's
ledger charges). Before comparing, every order the simulator knows the outcome of must have its executed
quantity covered by fills on its stream, so no fill still on its way is missing from the sum; once its makers
have cancelled everything, nothing may stay locked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import ujson
import websockets

from openbell.simulator.grid import Grid, asset_text, asset_units
from openbell.simulator.session import SimulatorError, User, describe


@dataclass(frozen=True, slots=True)
class Fill:
    market: str
    trade_id: str
    order_id: str
    side: str
    price: int
    """Ticks."""
    quantity: int
    """Lots."""
    is_maker: bool


@dataclass
class Ledger:
    """Everything the check needs: markets, deposits, starting balances, fills, and the executed quantity of
    every order whose outcome the simulator knows."""

    grids: dict[str, Grid]
    decimals: dict[str, int] = field(default_factory=dict)
    start: dict[str, dict[str, int]] = field(default_factory=dict)
    """user -> asset -> minor units held before the run."""
    deposits: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    fills: dict[str, dict[tuple[str, str], Fill]] = field(default_factory=lambda: defaultdict(dict))
    """user -> (trade id, order id) -> fill (a redelivered message counts once)."""
    executed: dict[str, int] = field(default_factory=dict)
    """order id -> lots executed, as the order's reply, cancel or disappearance from the open orders said."""

    def __post_init__(self) -> None:
        for grid in self.grids.values():
            self.decimals[grid.base] = grid.base_decimals
            self.decimals[grid.quote] = grid.quote_decimals

    def add_fill(self, user: str, data: dict[str, Any]) -> None:
        grid = self.grids.get(str(data.get("s")))
        if grid is None:
            return
        fill = Fill(
            market=grid.symbol,
            trade_id=str(data["t"]),
            order_id=str(data["i"]),
            side=str(data["S"]).lower(),
            price=grid.ticks(str(data["p"])),
            quantity=grid.lots(str(data["q"])),
            is_maker=bool(data["m"]),
        )
        self.fills[user][(fill.trade_id, fill.order_id)] = fill

    def uncovered(self) -> list[str]:
        """Orders whose fills on the stream do not (yet) add up to what the API said they executed."""
        streamed: dict[str, int] = defaultdict(int)
        for fills in self.fills.values():
            for fill in fills.values():
                streamed[fill.order_id] += fill.quantity
        return [order for order, lots in self.executed.items() if streamed.get(order, 0) != lots]

    def expected(self, user: str) -> dict[str, int]:
        """What `user` must hold per asset, in minor units."""
        held: dict[str, int] = defaultdict(int)
        for asset, units in self.start.get(user, {}).items():
            held[asset] += units
        for asset, units in self.deposits.get(user, {}).items():
            held[asset] += units
        for fill in self.fills.get(user, {}).values():
            grid = self.grids[fill.market]
            bps = grid.maker_fee_bps if fill.is_maker else grid.taker_fee_bps
            base = grid.base_units(fill.quantity)
            quote = grid.quote_units(fill.price, fill.quantity)
            if fill.side == "buy":
                held[grid.base] += base - base * bps // 10_000
                held[grid.quote] -= quote
            else:
                held[grid.base] -= base
                held[grid.quote] += quote - quote * bps // 10_000
        return dict(held)

    def compare(self, user: str, balances: dict[str, Any]) -> list[str]:
        """Differences between what `user` holds (a `GET /balance` answer) and what it must; empty if none."""
        problems = []
        expected = self.expected(user)
        for asset in sorted(set(expected) | set(self.decimals) & set(balances)):
            decimals = self.decimals.get(asset, 0)
            row = balances.get(asset, {"available": "0", "locked": "0"})
            available, locked = asset_units(row["available"], decimals), asset_units(row["locked"], decimals)
            want = expected.get(asset, 0)
            if available + locked != want:
                problems.append(
                    f"{user} {asset}: holds {asset_text(available + locked, decimals)}, "
                    f"deposits and fills say {asset_text(want, decimals)}"
                )
            if locked:
                problems.append(f"{user} {asset}: {asset_text(locked, decimals)} still locked with no order open")
        return problems


class FillStreams:
    """One WebSocket per user, made that user's by `User.ws_query` (its listen key, or in dev mode its name) and
    subscribed to `orders@<user>`, feeding its fills to the ledger."""

    def __init__(self, ws_url: str, ledger: Ledger) -> None:
        self._ws_url = ws_url
        self._ledger = ledger
        self._tasks: list[asyncio.Task[None]] = []
        self._sockets: list[Any] = []
        self.lost: list[str] = []
        """Users whose stream closed before the end (their check cannot be complete)."""

    async def open(self, user: User) -> None:
        query = user.ws_query()
        url = f"{self._ws_url}?{query}" if query else self._ws_url
        try:
            socket = await asyncio.wait_for(websockets.connect(url, max_size=2**22), 10)
            await socket.send(ujson.dumps({"method": "SUBSCRIBE", "params": [f"orders@{user.user_id}"], "id": 1}))
            answer = ujson.loads(await asyncio.wait_for(socket.recv(), 10))
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
            raise SimulatorError(f"cannot open the WebSocket stream at {self._ws_url}: {describe(error)}") from None
        if answer.get("error") is not None:
            await socket.close()
            raise SimulatorError(f"orders@{user.user_id}: the stream refused the subscription: {answer['error']}")
        self._sockets.append(socket)
        self._tasks.append(asyncio.create_task(self._read(user.user_id, socket)))

    async def _read(self, user: str, socket: Any) -> None:
        try:
            async for text in socket:
                message = ujson.loads(text)
                data = message.get("data") if isinstance(message, dict) else None
                if isinstance(data, dict) and data.get("e") == "fill":
                    self._ledger.add_fill(user, data)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.lost.append(user)

    async def close(self) -> None:
        for socket in self._sockets:
            with contextlib.suppress(Exception):
                await socket.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
