"""What the server does for the web page, over HTTP (no browser): it serves `/` and the files under `web/`
and nothing else, cheaply revalidated; `/api/v1/config` says where the WebSocket service is."""

from __future__ import annotations

import gzip

import httpx
import pytest
from conftest import ROOT, RunningServer

from openbell.http.web import CONTENT_TYPES, public_ws_url

VENDORED = "/web/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs"


def test_the_page_is_served_at_the_root_with_a_content_security_policy(exchange: RunningServer) -> None:
    response = httpx.get(exchange.base_url + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (ROOT / "web" / "index.html").read_text()
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_every_file_the_page_loads_is_served_by_openbell_with_its_type(exchange: RunningServer) -> None:
    web = ROOT / "web"
    files = [path for path in web.rglob("*") if path.is_file() and path.suffix in CONTENT_TYPES]
    assert any(path.name == "main.js" for path in files)

    for path in files:
        url = "/" if path.name == "index.html" else "/web/" + path.relative_to(web).as_posix()
        response = httpx.get(exchange.base_url + url, timeout=10)
        assert response.status_code == 200, url
        assert response.content == path.read_bytes(), url
        assert response.headers["content-type"] == CONTENT_TYPES[path.suffix], url


def test_a_reload_revalidates_with_the_etag_and_gets_304(exchange: RunningServer) -> None:
    first = httpx.get(exchange.base_url + "/web/js/main.js", timeout=10)

    again = httpx.get(exchange.base_url + "/web/js/main.js", headers={"If-None-Match": first.headers["etag"]})

    assert first.headers["cache-control"] == "no-cache"
    assert again.status_code == 304
    assert again.content == b""


def test_the_chart_library_is_sent_compressed_to_a_browser_that_accepts_gzip(exchange: RunningServer) -> None:
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", exchange.base_url + VENDORED, headers={"Accept-Encoding": "gzip"}) as response,
    ):
        raw = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert len(raw) < (ROOT / VENDORED.removeprefix("/")).stat().st_size / 2
    assert gzip.decompress(raw) == (ROOT / VENDORED.removeprefix("/")).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/web/../cli.py",
        "/web/%2e%2e/cli.py",
        "/web/vendor/README.md",
        "/web/vendor/lightweight-charts/LICENSE",
        "/web/x",
    ],
)
def test_nothing_outside_the_pages_own_files_is_served(exchange: RunningServer, path: str) -> None:
    response = httpx.get(exchange.base_url + path, timeout=10)

    assert response.status_code == 404
    assert set(response.json()) == {"code", "message"}


def test_the_config_endpoint_says_the_streams_are_on_the_pages_origin_and_users_sign_with_keys(
    exchange: RunningServer,
) -> None:
    response = httpx.get(exchange.api + "/config", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"wsUrl": "/ws", "auth": "keys"}  # authentication is on by default


@pytest.mark.parametrize(
    ("configured", "host", "expected"),
    [
        (None, "127.0.0.1:8000", "/ws"),
        ("wss://exchange.example/ws", "127.0.0.1:8000", "wss://exchange.example/ws"),
        ("ws://10.0.0.5:8001/ws", "127.0.0.1:8000", "ws://10.0.0.5:8001/ws"),
        ("ws://0.0.0.0:8001/ws", "trading.lan:8000", "ws://trading.lan:8001/ws"),
        ("ws://0.0.0.0:8001/ws", "localhost", "ws://localhost:8001/ws"),
        ("ws://[::]:8001/ws", "[::1]:8000", "ws://[::1]:8001/ws"),
        ("/streams/ws", "127.0.0.1:8000", "/streams/ws"),
    ],
)
def test_a_wildcard_host_in_the_public_ws_url_means_the_host_the_page_came_from(
    configured: str | None, host: str, expected: str
) -> None:
    assert public_ws_url(configured, host) == expected
