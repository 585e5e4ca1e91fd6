"""bench.matcher in miniature: one small size, every pass and table present, and
the figures it writes hold together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_support import run_bench


@pytest.mark.slow
def test_a_small_matcher_bench_runs_every_pass(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    options = ["--sizes", "1000", "--queries", "600", "--budget", "0.2", "--json", str(figures)]
    stdout = run_bench("matcher", *options, timeout=300)
    for heading in ("the memo", "paced: the first 600 queries", "huge pages", "baselines"):
        assert heading in stdout, heading
    (size,) = json.loads(figures.read_text())["results"].values()
    assert size["deterrence"]["recall"][0] == size["deterrence"]["recall"][1] > 0
    for name in ("memo_off", "deterrence", "repeated", "back_to_back", "paced"):
        latency = size[name]["latency"]
        assert latency["n"] == 600 and 0 < latency["p50"] <= latency["p99"], name
    for name in ("small_pages", "huge_pages"):
        assert size[name]["latency"]["n"] == 600, name
    assert size["huge_pages_mib"] >= 0 and size["huge_pages_seconds"] >= 0


@pytest.mark.slow
def test_a_small_reload_memo_bench_compares_the_two_lineages() -> None:
    options = ["--terms", "500", "--cycles", "8", "--per-cycle", "600"]
    stdout = run_bench("reload_memo", *options, timeout=300)
    looked_up = {
        cells[1].strip(): int(cells[3].replace(",", ""))
        for line in stdout.splitlines()
        if (cells := line.split("|"))[1:2] and "memo" in cells[1]
    }
    assert 0 < looked_up["shared word memo"] < looked_up["fresh memos"]
    assert "fresh / shared" in stdout
