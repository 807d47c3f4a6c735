"""Command line of `python run.py`."""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python run.py", description="openbell exchange server")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("openbell: the matching core and ledger are in place; the server arrives with the REST API.")
    return 0
