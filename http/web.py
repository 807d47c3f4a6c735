"""The web trading page: `GET /`, its files under `/web/`, and `GET /api/v1/config` for the page.

The page is plain HTML, CSS and JavaScript modules in the repository's top-level `web/` folder, run as
they are (no build step); `web/vendor/` holds third-party code, each with its licence and version. The
config endpoint tells the page where the WebSocket service is and how users sign in:
`{"wsUrl": "/ws" | "ws://host:port/ws", "auth": "dev" | "keys"}`. A relative `wsUrl` is resolved
against the page's own address; a URL whose host is a wildcard address (`0.0.0.0`, `::`) means "the
host this page was loaded from" (a cluster bound to every interface cannot know the name its users
type).

Invariants: only files found under `web/` when the app is built are served, by their exact path; no
part of a request reaches the file system. Every file is sent with an ETag and `Cache-Control:
no-cache` (a reload revalidates, an upgrade is seen at once) and the page with a Content Security Policy
that allows its own origin and WebSocket connections only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import pathlib
import urllib.parse
from dataclasses import dataclass
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from openbell.core.types import ResultCode
from openbell.edge.errors import ApiError

WEB_DIR = pathlib.Path(__file__).resolve().parent.parent / "web"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
"""The kinds of file served; anything else under web/ (licences, notes) is not."""
AUTH_MODES = ("dev", "keys")
DOCS_PAGE = WEB_DIR / "docs.html"
"""The interactive API docs' page (/docs): Swagger UI from web/vendor/swagger-ui/, nothing from a CDN."""
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
PAGE_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True, slots=True)
class WebFile:
    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True, slots=True)
class WebSettings:
    files: dict[str, WebFile]
    """By URL path: `/` for index.html, `/web/<path>` for the rest."""
    public_ws_url: str | None
    auth: str


def install_web(app: Sanic, *, public_ws_url: str | None = None, auth: str = "dev") -> None:
    """Serve the trading page on `app` and tell it, at /api/v1/config, where the WebSocket service is.

    `public_ws_url` is the WebSocket URL as the browser must use it (None: `/ws` on the page's origin).
    """
    if auth not in AUTH_MODES:
        raise ValueError(f"auth must be one of {AUTH_MODES}")
    app.ctx.web = WebSettings(load_files(WEB_DIR), public_ws_url, auth)
    app.add_route(web_page, "/", methods=["GET"], name="web_page")
    app.add_route(web_file, "/web/<path:path>", methods=["GET"], name="web_file")
    app.add_route(web_config, "/api/v1/config", methods=["GET"], name="web_config")


def load_files(root: pathlib.Path) -> dict[str, WebFile]:
    files: dict[str, WebFile] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        web_file_ = WebFile(body, content_type, etag)
        files["/" if relative.as_posix() == "index.html" else f"/web/{relative.as_posix()}"] = web_file_
    return files


_GZIPPED: dict[str, bytes | None] = {}
"""Compressed bodies by ETag, made on first request (not at start: the docs' script alone is 1.7 MB)."""


def gzipped(found: WebFile) -> bytes | None:
    """`found` compressed, or None when compressing does not make it smaller."""
    if found.etag not in _GZIPPED:
        packed = gzip.compress(found.body, compresslevel=9, mtime=0)
        _GZIPPED[found.etag] = packed if len(packed) < len(found.body) else None
    return _GZIPPED[found.etag]


def settings_of(request: Request) -> WebSettings:
    return request.app.ctx.web


def send(request: Request, path: str) -> HTTPResponse:
    found = settings_of(request).files.get(path)
    if found is None:
        raise ApiError.of(ResultCode.NOT_FOUND, "no such file")
    headers = {"ETag": found.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if path == "/":
        headers["Content-Security-Policy"] = PAGE_POLICY
        headers["Referrer-Policy"] = "no-referrer"
    if found.etag in request.headers.get("if-none-match", ""):
        return HTTPResponse(status=304, headers=headers)
    body = found.body
    headers["Vary"] = "Accept-Encoding"
    packed = gzipped(found) if "gzip" in request.headers.get("accept-encoding", "") else None
    if packed is not None:
        body = packed
        headers["Content-Encoding"] = "gzip"
    return raw(body, content_type=found.content_type, headers=headers)


@openapi.exclude()
async def web_page(request: Request) -> HTTPResponse:
    return send(request, "/")


@openapi.exclude()
async def web_file(request: Request, path: str) -> HTTPResponse:
    return send(request, f"/web/{path}")


@openapi.summary("Where the web page finds the WebSocket service, and how users sign in")
@openapi.response(200, {"application/json": {"wsUrl": str, "auth": str}}, "`auth` is `dev` (a user id) or `keys`")
async def web_config(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    return json({"wsUrl": public_ws_url(settings.public_ws_url, request.host), "auth": settings.auth})


def public_ws_url(configured: str | None, request_host: str) -> str:
    """The WebSocket URL for a page loaded from `request_host` (the request's Host: name[:port])."""
    if configured is None:
        return "/ws"
    parts = urllib.parse.urlsplit(configured)
    if parts.hostname is None or parts.hostname not in WILDCARD_HOSTS:
        return configured
    page_host = urllib.parse.urlsplit(f"//{request_host}").hostname or "127.0.0.1"
    if ":" in page_host:
        page_host = f"[{page_host}]"
    netloc = page_host if parts.port is None else f"{page_host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_public_ws_url(value: Any) -> str:
    """For argparse: a ws://, wss:// or /path URL."""
    text = str(value)
    scheme = urllib.parse.urlsplit(text).scheme
    if scheme not in ("ws", "wss") and not text.startswith("/"):
        raise argparse.ArgumentTypeError("must be ws://HOST:PORT/ws, wss://HOST/ws or a path such as /ws")
    return text
