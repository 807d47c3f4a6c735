"""The Binance API says its rate limits: `exchangeInfo.rateLimits` lists the buckets the server was started with,
and every `/api/v3` answer carries `X-MBX-USED-WEIGHT-1M`, the address's requests in the current minute."""

from __future__ import annotations

import itertools
import pathlib

import httpx
from conftest import start_server

LIMITS = ("--orders-per-key", "7", "--reads-per-key", "50", "--orders-per-address", "0", "--reads-per-address",
          "500", "--rate-burst-seconds", "2")  # fmt: skip


def counts_follow_on(counts: list[int]) -> bool:
    """Each count one more than the one before, or 1 where a new minute began."""
    return all(later in (earlier + 1, 1) for earlier, later in itertools.pairwise(counts))


def test_exchange_info_lists_the_configured_buckets_and_answers_count_the_minutes_weight(
    tmp_path: pathlib.Path,
) -> None:
    server = start_server(tmp_path, "--in-memory", *LIMITS)
    try:
        with httpx.Client(base_url=f"{server.base_url}/api/v3", timeout=10) as client:
            info = client.get("/exchangeInfo")
            answers = [client.get("/ping") for _ in range(5)]
            bad_symbol = client.get("/depth", params={"symbol": "NOSUCH"})
            unsigned = client.get("/account")
    finally:
        assert server.stop() == 0, server.log()

    rows = [
        (row.pop("rateLimitType"), row.pop("per"), row.pop("limit"), row.pop("burst"), row)
        for row in info.json()["rateLimits"]
    ]
    assert rows == [  # orders per address is 0 (off): not listed
        ("REQUEST_WEIGHT", "API_KEY", 50, 100, {"interval": "SECOND", "intervalNum": 1}),
        ("REQUEST_WEIGHT", "ADDRESS", 500, 1000, {"interval": "SECOND", "intervalNum": 1}),
        ("ORDERS", "API_KEY", 7, 14, {"interval": "SECOND", "intervalNum": 1}),
    ]
    responses = [info, *answers, bad_symbol, unsigned]
    counts = [int(response.headers["X-MBX-USED-WEIGHT-1M"]) for response in responses]
    assert counts[0] == 1 and counts_follow_on(counts), counts  # /api/v1/health (the readiness probe) is not counted
    assert bad_symbol.json()["code"] == -1121 and unsigned.json()["code"] == -2014
