"""Unmodified ccxt clients pointed at an openbell server, as the README tells a reader to set them up.

`BinanceKeys` is the one place tests get a user's apiKey and secret: a real key (read and trade) made through
the operator's route on first use, so every signed request is checked as a production server checks it.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import ccxt
import ccxt.pro
from conftest import ADMIN_TOKEN, create_key

_keys: dict[tuple[str, str], tuple[str, str]] = {}


@dataclass
class BinanceKeys:
    base_url: str

    def key_for(self, user_id: str) -> tuple[str, str]:
        """(apiKey, secret) of `user_id`."""
        key = _keys.get((self.base_url, user_id))
        if key is None:
            made = create_key(f"{self.base_url}/api/v1", user_id)
            key = _keys[(self.base_url, user_id)] = (made["apiKey"], made["secret"])
        return key


def options(base_url: str, ws_url: str | None, api_key: str, secret: str) -> dict[str, Any]:
    """ccxt.binance's configuration for an openbell server (README's snippet)."""
    api: dict[str, Any] = {"public": f"{base_url}/api/v3", "private": f"{base_url}/api/v3"}
    if ws_url is not None:
        # market streams at /ws/<n>; a spot account's streams through Binance's WebSocket API, at /ws-api/v3
        api["ws"] = {"spot": ws_url, "ws-api": {"spot": ws_url.removesuffix("/ws") + "/ws-api/v3"}}
    return {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": False,
        "urls": {"api": api},
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "adjustForTimeDifference": False,
        },
    }


def rest_client(keys: BinanceKeys, user_id: str) -> ccxt.binance:
    api_key, secret = keys.key_for(user_id)
    client = ccxt.binance(options(keys.base_url, None, api_key, secret))
    client.timeout = 15_000
    return client


def pro_client(keys: BinanceKeys, ws_url: str, user_id: str) -> ccxt.pro.binance:
    api_key, secret = keys.key_for(user_id)
    client = ccxt.pro.binance(options(keys.base_url, ws_url, api_key, secret))
    client.timeout = 15_000
    return client


def deposit(base_url: str, user_id: str, asset: str, amount: str, txn_id: str) -> None:
    """Credit funds through `/api/v1/onramp`."""
    body = json.dumps({"user_id": user_id, "asset": asset, "amount": amount, "txnId": txn_id}).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/onramp",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
