"""bench.soak in miniature: a few seconds of load against the demo and the proxy
while the lists are rewritten, with every answer checked and nothing failing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_short_soak_has_no_errors_and_every_reload_lands() -> None:
    options = ["--seconds", "8", "--reload-every", "2", "--terms", "300", "--connections", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", *options, "--probe-rate", "40"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and line.count("|") == 4
    }
    assert rows["socket errors / non-2xx"] == ["0 / 0", "0 / 0"]
    for cell in rows["probe requests / errors / wrong answers"]:
        requests, errors, wrong = (part.strip() for part in cell.split("/"))
        assert int(requests.replace(",", "")) > 100 and errors == "0" and wrong == "0"
    for cell in rows["list rewrites / reloads ok / error"]:
        rewrites, ok, error = (int(part) for part in cell.split("/"))
        assert rewrites >= 2 and ok == rewrites and error == 0
    # The load's queries are distinct, so matching work is timed throughout, not
    # only right after reloads: both sides of the split hold many observations.
    for label in ("matcher p99, ≤ 2 s after a rewrite", "matcher p99, other times"):
        for cell in rows[label]:
            found = re.search(r"\(n=([\d,]+),", cell)
            assert found and int(found.group(1).replace(",", "")) > 1000, (label, cell)
