"""bench.soak in miniature: a few seconds of load against the demo and the proxy
while the lists are rewritten, with every answer checked and nothing failing."""

from __future__ import annotations

import re

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
