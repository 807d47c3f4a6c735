"""README.md's ccxt snippet works as written: after the quick start's commands, on a fresh server, it runs
to the end and prints what its orders did."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from collections.abc import Iterator

import pytest
from conftest import RunningServer, start_server
from test_readme import README, README_ORIGIN, curl_commands, run_with_httpx


def ccxt_snippet() -> str:
    text = README.read_text()
    section = re.search(r"^## The Binance API \(ccxt\)\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert section, "README.md has no '## The Binance API (ccxt)' section"
    code = re.search(r"```python\n(.*?)```", section.group(1), flags=re.DOTALL)
    assert code, "the section has no python snippet"
    return code.group(1)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("readme-ccxt"), "--dev")  # as the README says
    yield server
    code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.log()}"


def test_the_ccxt_snippet_runs_after_the_quick_start(fresh_server: RunningServer) -> None:
    for command in curl_commands():
        status, body = run_with_httpx(shlex.split(command.replace(README_ORIGIN, fresh_server.base_url)))
        assert 200 <= status < 300, (command, status, body)
    code = ccxt_snippet().replace("127.0.0.1:8000", f"127.0.0.1:{fresh_server.port}")
    printed = io.StringIO()

    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_snippet"})

    lines = printed.getvalue().splitlines()
    # User 2 offers 2 more at 100.50 behind its 6 at 100.00; user 1 buys 1 (IOC), then 2 for 250 INR of budget.
    assert len(lines) == 7, lines
    assert "'price': 0.01" in lines[0] and "'amount': 1.0" in lines[0]
    assert lines[1:3] == ["closed", "2.0"]
    assert lines[3] == "[[100.0, 3.0], [100.5, 2.0]] {'free': 7.0, 'used': 0.0, 'total': 7.0}"
    assert lines[4] == "canceled 3"
    nonce, bids = lines[5].split(" ", 1)
    assert int(nonce) > 0 and bids == "[]"
    assert lines[6] == "[('buy', 90.0, 'open')]"  # user 1's bid, from its own stream
