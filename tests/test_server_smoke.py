"""`python run.py` serves the API, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import httpx
from conftest import RunningServer


def test_health_answers_and_lists_the_default_market(exchange: RunningServer) -> None:
    response = httpx.get(f"{exchange.api}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    markets = httpx.get(f"{exchange.api}/markets", timeout=5).json()
    assert [m["symbol"] for m in markets] == ["TATA_INR"]
