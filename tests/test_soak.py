"""bench.soak in miniature: a few seconds of load against the demo and the proxy
while the lists are rewritten, with every answer checked and nothing failing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from bench_support import run_bench


@pytest.mark.slow
def test_a_short_soak_has_no_errors_and_every_reload_lands() -> None:
    options = ["--seconds", "8", "--reload-every", "2", "--terms", "300", "--connections", "4"]
    stdout = run_bench("soak", *options, "--probe-rate", "40", timeout=180)
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in stdout.splitlines()
        if line.startswith("| ") and line.count("|") == 4
    }
    assert rows["socket errors / non-2xx"] == ["0 / 0", "0 / 0"]
    for cell in rows["probe requests / errors / wrong answers"]:
        requests, errors, wrong = (part.strip() for part in cell.split("/"))
        assert int(requests.replace(",", "")) > 100 and errors == "0" and wrong == "0"
    for cell in rows["list rewrites / reloads ok / error"]:
        rewrites, ok, error = (int(part) for part in cell.split("/"))
        assert rewrites >= 2 and ok == rewrites and error == 0
    # The spike tests are reported for both targets (their verdicts depend on the
    # machine: a short run on a shared one is no place to assert them).
    spike_rows = [label for label in rows if label.startswith("**reload spike")]
    assert len(spike_rows) == 2, list(rows)
    requests, matches = spike_rows
    verdict = r"(no spike|SPIKE|inconclusive)"
    for cell in rows[requests]:
        assert re.fullmatch(rf"[+-][\d.]+ ms \[[+-][\d.]+, [+-][\d.]+\]: {verdict}", cell), cell
    for cell in rows[matches]:
        share = r"[\d.]+%"
        counts = r"\(n=([\d,]+) / ([\d,]+)\)"
        found = re.fullmatch(
            rf"{share} \[{share}, {share}\] / {share} {counts}: ({verdict}|— \(.*\))", cell
        )
        assert found, cell
        # The load's queries are distinct, so matching work is timed throughout, not
        # only right after reloads: both sides of the split hold many observations.
        inside, outside = (int(n.replace(",", "")) for n in found.groups()[:2])
        assert inside > 1000 and outside > 1000, cell
    # The servers ran under bench.gc_trace: their collections were logged.
    label = next(label for label in rows if label.startswith("the server's cycle collections"))
    for cell in rows[label]:
        assert re.fullmatch(r"[\d.]+ / [\d.]+ \(longest [\d.]+ ms\)", cell), cell
    # The probe client reports how late it sent: its own stalls, which the kernel's
    # receive timestamps keep out of the latencies.
    for cell in rows["probe client's own stalls over 1 ms (count / longest)"]:
        assert re.fullmatch(r"\d+ / [\d.]+ ms", cell), cell


def test_slow_requests_are_told_apart_by_when_they_fall_after_a_rewrite() -> None:
    from bench.soak import slower_by_span

    rewrites = [10.0, 20.0]
    samples = [
        (5.0, 0.009),  # before the first rewrite: counted nowhere
        (10.01, 0.009),  # first 50 ms, slow
        (20.04, 0.001),  # first 50 ms, fast
        (10.2, 0.009),  # 50-500 ms, slow
        (20.3, 0.001),
        (20.49, 0.001),
        (11.0, 0.009),  # 0.5-2 s, slow
        (21.9, 0.001),
        (12.5, 0.009),  # past the window: counted nowhere
    ]
    assert slower_by_span(samples, rewrites, 2.0, 0.005) == [(1, 2), (1, 3), (1, 2)]


def test_collections_are_counted_per_minute_inside_and_outside_the_windows() -> None:
    from bench.soak import collections_by_window

    rewrites = [10.0, 20.0]
    collections = [
        (5.0, 2, 0.020),  # before the first rewrite: other times
        (10.5, 0, 0.002),  # within 2 s of the first rewrite
        (11.0, 1, 0.0005),  # too short to count
        (15.0, 1, 0.003),  # other times
        (21.9, 0, 0.001),  # within 2 s of the second
    ]
    inside, outside = collections_by_window(collections, rewrites, (0.0, 30.0), 2.0)
    assert inside == 60 * 2 / 4.0  # two in 2 s + 2 s
    assert outside == 60 * 2 / 26.0


def test_gc_trace_logs_each_collection_of_the_module_it_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    from bench import gc_trace

    module = tmp_path / "collects.py"
    module.write_text("import gc\nfor generation in (0, 1, 2):\n    gc.collect(generation)\n")
    log = tmp_path / "collections.log"
    subprocess.run(
        [sys.executable, "-m", "bench.gc_trace", str(log), "collects"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=True,
        timeout=60,
    )
    found = gc_trace.read(log)
    generations = "".join(str(generation) for _, generation, _ in found)
    assert "012" in generations  # the module's three (and the interpreter's own at exit)
    assert all(seconds >= 0 for _, _, seconds in found)
