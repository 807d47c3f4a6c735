"""`python run.py key create|list|revoke`: API keys, through a running server's operator routes.

The operator's token comes from OPENBELL_ADMIN_TOKEN, else `--admin-token-file`, else
`<--data-dir>/admin-token` (default ./data, what the server made at first start).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from openbell.edge.credentials import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
    common.add_argument("--admin-token-file", default=None, help="file holding the operator's token")
    common.add_argument(
        "--data-dir",
        default=os.environ.get("OPENBELL_DATA_DIR", "./data"),
        help="the server's data directory, whose admin-token file is read if no other token is given (default ./data)",
    )
    parser = argparse.ArgumentParser(prog="python run.py key", description="API keys of a running openbell server")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create", parents=[common], help="create a key and print it with its secret (shown only now)"
    )
    create.add_argument("--user", required=True, help="the user the key acts for")
    create.add_argument("--read-only", action="store_true", help="the key may read but not place or cancel")
    listing = commands.add_parser("list", parents=[common], help="a user's keys (no secrets)")
    listing.add_argument("--user", required=True, help="the user")
    revoke = commands.add_parser("revoke", parents=[common], help="revoke a key")
    revoke.add_argument("api_key", help="the key to revoke")
    return parser


def operator_token(args: argparse.Namespace) -> str:
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if token:
        return token
    path = (
        pathlib.Path(args.admin_token_file) if args.admin_token_file else pathlib.Path(args.data_dir) / ADMIN_TOKEN_FILE
    )
    try:
        return path.read_text().strip()
    except OSError as error:
        raise SystemExit(
            f"openbell: no operator token: set {ADMIN_TOKEN_ENV} or --admin-token-file ({path}: {error.strerror})"
        ) from None


def main(argv: list[str] | None = None) -> int:
    import httpx

    from openbell.client import Client

    args = build_parser().parse_args(argv)
    with Client(args.url, admin_token=operator_token(args)) as client:
        try:
            if args.command == "create":
                permissions = ["read"] if args.read_only else ["read", "trade"]
                response = client.post("/admin/keys", json={"user_id": args.user, "permissions": permissions})
            elif args.command == "list":
                response = client.get("/admin/keys", params={"user_id": args.user})
            else:
                response = client.delete(f"/admin/keys/{args.api_key}")
        except httpx.HTTPError as error:
            print(f"openbell: {args.url} does not answer: {error}", file=sys.stderr)
            return 1
    if response.status_code != 200:
        print(f"openbell: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2))
    return 0
