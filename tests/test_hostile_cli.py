"""``python -m deterrence.hostile``, as an operator runs it: their own small case file
against their own running server (here a real uvicorn on loopback). It exits 0 when
every case passes, and non-zero, naming the case and what was wrong, when one does
not. The shipped cases are in tests/test_hostile.py. Every term here is invented.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_uvicorn import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from deterrence import DeterrenceMiddleware

PASSING = """
secrets = ["tozzlewick-secret"]

[[case]]
id = "an-ordinary-search"
title = "nothing listed in it: the site answers"
path = "/search?q=weather+{canary}"
expect = { outcome = "passed" }

[[case]]
id = "a-listed-word"
title = "the warning page, with the status the operator chose"
path = "/search?q=zorblax+{canary}"
expect = { outcome = "blocked", status = "451" }
"""

FAILING = """
[[case]]
id = "wrongly-expected"
title = "a case whose expectation the server does not meet"
path = "/search?q=zorblax"
expect = { outcome = "passed" }
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    async def search(request: Request) -> PlainTextResponse:
        return PlainTextResponse("results")

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "cli.toml").write_text('id = "cli"\ncategory = "testing"\nterms = ["zorblax"]\n')
    app = Starlette(routes=[Route("/search", search)])
    middleware = DeterrenceMiddleware(
        app, lists=[lists], data_dir=tmp_path / "data", block_status=451
    )
    with serve(middleware) as base:
        yield base


def run(base: str, cases: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deterrence.hostile", "--url", base, "--cases", str(cases)]
    return subprocess.run(
        [*command, "--block-status", "451", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_case_file_that_passes_exits_0(server: str, tmp_path: Path) -> None:
    cases = tmp_path / "mine.toml"
    cases.write_text(PASSING)
    result = run(server, cases)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   an-ordinary-search" in result.stdout
    assert "ok   a-listed-word" in result.stdout
    assert result.stdout.rstrip().endswith("2/2 cases passed; 0 leak(s) in the log")


def test_a_failing_case_exits_non_zero_and_says_which_and_why(server: str, tmp_path: Path) -> None:
    cases = tmp_path / "mine.toml"
    cases.write_text(FAILING)
    result = run(server, cases)
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith("FAIL wrongly-expected: [451]")
    assert line.endswith("expected no warning page, got one")
    assert result.stdout.rstrip().endswith("0/1 cases passed; 0 leak(s) in the log")


def test_a_secret_in_the_server_log_fails_the_run(server: str, tmp_path: Path) -> None:
    cases = tmp_path / "mine.toml"
    cases.write_text(PASSING)
    log = tmp_path / "site.log"
    log.write_text("GET /search?q=weather 200\nsomeone logged TOZZLEWICK-SECRET here\n")
    result = run(server, cases, "--log", str(log))
    assert result.returncode == 1
    assert "FAIL 'tozzlewick-secret' found in the server's log" in result.stderr
    assert "2/2 cases passed; 1 leak(s) in the log" in result.stdout


def test_a_broken_case_file_is_one_clear_line(server: str, tmp_path: Path) -> None:
    cases = tmp_path / "mine.toml"
    cases.write_text('[[case]]\ntitle = "a case without an id"\n')
    result = run(server, cases)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and str(cases) in result.stderr
    assert "missing key 'id'" in result.stderr
