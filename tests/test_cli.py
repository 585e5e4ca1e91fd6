"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deterrence.resources import KEYWORD_LISTS_DIR


def deterrence(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "deterrence", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_match_arguments_print_one_line_each() -> None:
    result = deterrence("match", "--lists", str(KEYWORD_LISTS_DIR), "z0rbl4x", "weather")
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("block\tdemo-generic\tgeneric\tterm 'zorblax'")
    assert lines[1] == "no match"


def test_match_json_from_stdin_survives_invalid_utf8() -> None:
    stdin = b"z o r b l a x\n\xff\xfe\xfa broken\n\nquendrificmirvel\r\nweather"
    result = deterrence("match", "--json", stdin=stdin)
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(rows) == 5
    assert [row["matched"] for row in rows] == [True, False, False, True, False]
    assert rows[0]["transforms"] == ["spacing"]
    assert rows[3]["term"] == "quendrific mirvel"
    assert "joined_phrase" in rows[3]["transforms"]
    for row in rows:
        assert {"matched", "action", "list", "category"} <= set(row)


def test_lists_check_accepts_the_shipped_lists() -> None:
    result = deterrence("lists", "check", str(KEYWORD_LISTS_DIR))
    assert result.returncode == 0
    assert b"ok  demo-generic" in result.stdout


def test_lists_check_reports_every_problem_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('id = "x"\ncategory = "c"\naction = "ban"\nterms = [""]\n')
    result = deterrence("lists", "check", str(tmp_path))
    assert result.returncode == 1
    errors = result.stderr.decode()
    assert "a.toml:3: action must be one of block, warn, count" in errors
    assert "empty term" in errors


def test_lists_test_runs_the_shipped_tests() -> None:
    result = deterrence("lists", "test", str(KEYWORD_LISTS_DIR))
    assert result.returncode == 0, result.stdout
    assert b"0 failed" in result.stdout


def test_lists_test_fails_on_a_failing_case(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        'id = "x"\ncategory = "c"\nterms = ["zorblax"]\n'
        '[tests]\nmatch = ["quendrific"]\nno_match = ["zorblaxes zorblax"]\n'
    )
    result = deterrence("lists", "test", str(tmp_path))
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "should match, did not: 'quendrific'" in out
    assert "should not match, matched 'zorblax'" in out


def test_lists_lint_names_the_words_a_term_would_catch(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        'id = "x"\ncategory = "c"\nlanguages = ["en"]\n'
        'terms = [{ term = "pent", substring = true }, "lime"]\n'
    )
    result = deterrence("lists", "lint", "--words", "20000", str(tmp_path))
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "`pent` (substring) would catch: spent" in out
    assert "carpenter" in out
    assert "`lime`" not in out
    strict = deterrence("lists", "lint", "--strict", "--words", "20000", str(tmp_path))
    assert strict.returncode == 1


def test_a_server_freezes_its_start_up_heap_before_serving() -> None:
    # What lives at start-up stays out of the cycle collector's full collections:
    # `deterrence demo`, with uvicorn's serving loop replaced by a report.
    code = (
        "import gc, sys, uvicorn\n"
        "uvicorn.Server.run = lambda self: print('frozen', gc.get_freeze_count())\n"
        "from deterrence.cli import main\n"
        "sys.exit(main(['demo', '--port', '0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    frozen = int(result.stdout.split("frozen ")[1].split()[0])
    assert frozen > 10_000  # the modules, the app and its first matcher
