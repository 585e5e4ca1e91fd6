"""bench.matcher in miniature: one small size, every pass and table present, and
the figures it writes hold together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_small_matcher_bench_runs_every_pass(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    options = ["--sizes", "1000", "--queries", "600", "--budget", "0.2", "--json", str(figures)]
    result = subprocess.run(
        [sys.executable, "-m", "bench.matcher", *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for heading in ("the memo", "paced: the first 600 queries", "huge pages", "baselines"):
        assert heading in result.stdout, heading
    (size,) = json.loads(figures.read_text())["results"].values()
    assert size["deterrence"]["recall"][0] == size["deterrence"]["recall"][1] > 0
    for name in ("memo_off", "deterrence", "repeated", "back_to_back", "paced"):
        latency = size[name]["latency"]
        assert latency["n"] == 600 and 0 < latency["p50"] <= latency["p99"], name
    for name in ("small_pages", "huge_pages"):
        assert size[name]["latency"]["n"] == 600, name
    assert size["huge_pages_mib"] >= 0 and size["huge_pages_seconds"] >= 0
