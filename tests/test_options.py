"""The command line: every option of every mode says what it does, and the cluster passes on what is its own."""

from __future__ import annotations

import argparse

import pytest

from openbell.options import MODES, TOOLS, build_parser, engine_argv


@pytest.mark.parametrize("mode", [None, *MODES, *TOOLS])
def test_every_option_of_every_mode_has_a_help_line(mode: str | None) -> None:
    parser = build_parser(mode)

    silent = [
        action.option_strings
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction) and not action.help
    ]

    assert not silent, f"{mode or 'embedded'}: {silent}"


def test_the_cluster_gives_its_engine_every_durability_and_history_option_it_was_given() -> None:
    args = build_parser("cluster").parse_args(
        [
            "--data-dir",
            "/tmp/d",
            "--no-fsync",
            "--db",
            "postgresql://x/y",
            "--snapshot-every",
            "7",
            "--keep-snapshots",
            "3",
        ]
    )

    engine = build_parser("engine").parse_args(engine_argv(args))

    for name in ("data_dir", "no_fsync", "db", "snapshot_every", "keep_snapshots", "snapshot_interval", "markets"):
        assert getattr(engine, name) == getattr(args, name), name


def test_the_embedded_and_engine_modes_share_the_engine_options_with_the_same_defaults() -> None:
    embedded, engine = build_parser(None).parse_args([]), build_parser("engine").parse_args([])

    shared = {"markets", "assets", "data_dir", "in_memory", "no_fsync", "snapshot_every", "snapshot_interval",
              "keep_snapshots", "db", "no_history", "max_open_orders", "switch_interval"}  # fmt: skip
    for name in shared:
        assert getattr(embedded, name) == getattr(engine, name), name
