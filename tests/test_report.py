"""``deterrence report``: formats, suppression, noise, date ranges — through the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from seed_store import VARIANTS, seed

from deterrence.cli import main
from deterrence.metrics import HELP_CLICKS, INSPECTED, INTERVENTIONS, PAGE_VIEWS
from deterrence.report import (
    SENSITIVITY,
    build_report,
    day_range,
    opendp_laplace,
    period_starts,
    to_csv,
)
from deterrence.store import Store, encode_labels, hour_key

REPO = Path(__file__).resolve().parent.parent
END = datetime(2026, 11, 1, tzinfo=UTC)  # seeded data: 28 days before this


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> Result:
    """``deterrence report ARGS`` in this process (one test runs it as a real process)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["report", *args])
        except SystemExit as exc:  # argparse rejects the arguments
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def test_python_m_deterrence_report(seeded: tuple[Path, object]) -> None:
    data_dir, _ = seeded
    result = subprocess.run(
        [
            *(sys.executable, "-m", "deterrence", "report", "--format", "json"),
            *("--from", "2026-10-30", "--to", "2026-10-31", "--data-dir", str(data_dir)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["period"] == "hour"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    data_dir = tmp_path_factory.mktemp("report")
    truth = seed(Store(data_dir), end=END, days=28)
    return data_dir, truth


def test_json_report_matches_what_was_counted(seeded: tuple[Path, object]) -> None:
    data_dir, truth = seeded
    result = cli(
        "--from",
        "2026-10-04",
        "--to",
        "2026-10-31",
        "--format",
        "json",
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["totals"] == {
        "inspected": truth.inspected,  # type: ignore[attr-defined]
        "interventions": truth.interventions,  # type: ignore[attr-defined]
        "page_views": truth.page_views,  # type: ignore[attr-defined]
        "help_clicks": truth.help_clicks,  # type: ignore[attr-defined]
    }
    assert report["period"] == "day"
    assert len(report["timeline"]) == 28
    assert report["timeline"][0]["period"] == "2026-10-04T00:00:00+00:00"
    assert sum(day["inspected"] for day in report["timeline"]) == truth.inspected  # type: ignore[attr-defined]
    variants = {v["variant"]: v for v in report["variants"]}
    assert set(variants) == set(VARIANTS)
    for name, row in variants.items():
        assert row["page_views"] == truth.views_by_variant[name]  # type: ignore[attr-defined]
        assert row["help_clicks"] == truth.clicks_by_variant[name]  # type: ignore[attr-defined]
        assert row["low"] < row["rate"] < row["high"]
    assert variants["control"]["reference"] is True
    assert report["variant_test"]["test"] == "chi-square homogeneity"
    assert report["variant_test"]["df"] == 2
    assert report["variant_test"]["p_value"] < 0.05  # 8 % vs 15 % vs 11 % over thousands
    assert {s["service"] for s in report["services"]} == {
        "stop-it-now",
        "helpline-de",
        "chat-int",
        "report-line",
    }
    assert report["services"][0]["service"] == "stop-it-now"  # most clicks first
    # The previous window (before the seeded data) is empty: no change to compute.
    assert report["previous_totals"]["inspected"] is None
    assert report["change"]["inspected"] is None


def test_csv_and_html_formats(seeded: tuple[Path, object], tmp_path: Path) -> None:
    data_dir, truth = seeded
    out = tmp_path / "report.csv"
    result = cli(
        "--from",
        "2026-10-04",
        "--to",
        "2026-10-31",
        "--format",
        "csv",
        "--data-dir",
        str(data_dir),
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert set(rows[0]) == {"section", "period", "key", "value"}
    totals = {r["key"]: r["value"] for r in rows if r["section"] == "total"}
    assert totals["inspected"] == str(truth.inspected)  # type: ignore[attr-defined]
    sections = {r["section"] for r in rows}
    for section in (
        "timeline",
        "interventions_by_category",
        "interventions_by_list",
        "variant_click_through",
        "variant_chi_square",
        "service_help_clicks",
    ):
        assert section in sections

    html = cli("--from", "2026-10-04", "--to", "2026-10-31", "--data-dir", str(data_dir))
    assert html.returncode == 0, html.stderr
    page = html.stdout
    assert page.startswith("<!doctype html>")
    assert "Content-Security-Policy" in page and "<script" not in page
    assert page.count("<svg") >= 5
    assert f"{truth.inspected:,}" in page  # type: ignore[attr-defined]
    assert "Chi-square test of homogeneity" in page


def test_small_counts_are_suppressed(tmp_path: Path) -> None:
    hour = hour_key(datetime(2026, 10, 10, 12, tzinfo=UTC))
    Store(tmp_path).write(
        {
            (hour, INSPECTED, encode_labels({"route": "/search"})): 500,
            (hour, PAGE_VIEWS, encode_labels({"variant": "harm", "locale": "en"})): 9,
            (hour, HELP_CLICKS, encode_labels({"service": "helpline", "variant": "harm"})): 2,
        }
    )
    args = ("--from", "2026-10-10", "--to", "2026-10-10", "--data-dir", str(tmp_path))
    report = json.loads(cli(*args, "--format", "json").stdout)
    assert report["totals"]["inspected"] == 500
    assert report["totals"]["page_views"] is None
    assert report["totals"]["help_clicks"] is None
    assert report["variants"] == [
        {
            "variant": "harm",
            "page_views": None,
            "help_clicks": None,
            "rate": None,
            "low": None,
            "high": None,
            "p_value": None,
            "reference": False,
        }
    ]
    assert report["click_through"] is None
    text = cli(*args, "--format", "csv").stdout
    assert "total,,page_views,<10" in text
    assert ",9\n" not in text and ",2\n" not in text
    # --min-count 1 lowers the threshold; 0 turns suppression off.
    shown = json.loads(cli(*args, "--format", "json", "--min-count", "1").stdout)
    assert shown["totals"]["page_views"] == 9
    assert shown["services"] == [{"service": "helpline", "help_clicks": 2}]
    with_k = json.loads(cli(*args, "--format", "json", "--min-count", "3").stdout)
    assert with_k["services"] == [{"service": "helpline", "help_clicks": None}]


def test_date_filtering_and_the_previous_window(tmp_path: Path) -> None:
    store = Store(tmp_path)
    label = encode_labels({"route": "/search"})
    counts = {}
    for day in range(1, 31):  # 100 × day-of-month searches on every day of September
        counts[(hour_key(datetime(2026, 9, day, 5, tzinfo=UTC)), INSPECTED, label)] = 100 * day
    store.write(counts, domain=[(INSPECTED, label)])
    report = json.loads(
        cli(
            "--from",
            "2026-09-11",
            "--to",
            "2026-09-20",
            "--format",
            "json",
            "--data-dir",
            str(tmp_path),
        ).stdout
    )
    assert report["totals"]["inspected"] == 100 * sum(range(11, 21))
    assert report["previous_totals"]["inspected"] == 100 * sum(range(1, 11))
    assert report["change"]["inspected"] == pytest.approx(
        sum(range(11, 21)) / sum(range(1, 11)) - 1
    )
    assert [d["inspected"] for d in report["timeline"]] == [100 * d for d in range(11, 21)]
    weekly = json.loads(
        cli(
            "--from",
            "2026-09-01",
            "--to",
            "2026-09-30",
            "--period",
            "week",
            "--format",
            "json",
            "--data-dir",
            str(tmp_path),
        ).stdout
    )
    starts = [w["period"][:10] for w in weekly["timeline"]]
    assert starts == ["2026-08-31", "2026-09-07", "2026-09-14", "2026-09-21", "2026-09-28"]
    assert weekly["timeline"][0]["inspected"] == 100 * sum(range(1, 7))  # Tue 1 .. Sun 6
    assert sum(w["inspected"] for w in weekly["timeline"]) == 100 * sum(range(1, 31))


def test_cli_errors(tmp_path: Path) -> None:
    assert cli("--data-dir", str(tmp_path / "none")).returncode == 1
    assert "no aggregate store" in cli("--data-dir", str(tmp_path / "none")).stderr
    assert (
        cli("--from", "2026-10-10", "--to", "2026-10-01", "--data-dir", str(tmp_path)).returncode
        == 2
    )
    assert cli("--epsilon", "0").returncode == 2
    assert cli("--epsilon", "-1").returncode == 2
    assert cli("--from", "yesterday").returncode == 2


# --- differential privacy -----------------------------------------------------------


def discrete_laplace_variance(scale: float) -> float:
    q = math.exp(-1 / scale)
    return 2 * q / (1 - q) ** 2


def test_opendp_noise_has_the_discrete_laplace_distribution() -> None:
    scale = SENSITIVITY / 1.0
    noisy = opendp_laplace([1000] * 4000, scale)
    assert all(isinstance(v, int) for v in noisy)
    errors = [v - 1000 for v in noisy]
    expected_variance = discrete_laplace_variance(scale)  # about 2 * scale²
    assert abs(statistics.fmean(errors)) < 0.5  # sd of the mean ≈ 0.09
    assert 0.85 < statistics.pvariance(errors) / expected_variance < 1.15
    # Laplace tails: P(|X| > 3b) = e^-3 ≈ 5 %
    tail = sum(abs(e) > 3 * scale for e in errors) / len(errors)
    assert 0.03 < tail < 0.07


def test_noisy_report_is_close_to_the_truth_on_average(tmp_path: Path) -> None:
    store = Store(tmp_path)
    labels = encode_labels({"route": "/search"})
    empty = encode_labels({"variant": "harm", "locale": "en"})
    outside = encode_labels({"variant": "leaked", "locale": "en"})
    store.write(
        {
            (hour_key(datetime(2026, 10, 10, 8, tzinfo=UTC)), INSPECTED, labels): 1000,
            (hour_key(datetime(2026, 10, 10, 8, tzinfo=UTC)), PAGE_VIEWS, outside): 5000,
        },
        domain=[(INSPECTED, labels), (PAGE_VIEWS, empty)],
    )
    start, end = day_range(date(2026, 10, 10), date(2026, 10, 10))
    epsilon = 2.0
    totals, views = [], []
    # 1,200 reports: the sample variance of Laplace-like noise (kurtosis 6) then has a
    # relative error of about 6.5 %, so the ±30 % band below fails about once in
    # 200,000 runs; with 300 it was 13 % and failed about one CI run in 50.
    for _ in range(1200):
        # One day as one period: the total is a single noisy cell.
        report = build_report(
            store, start=start, end=end, period="day", min_count=0, epsilon=epsilon
        )
        assert report.epsilon == epsilon
        totals.append(report.totals["inspected"])
        views.append(report.totals["page_views"])
    assert len(set(totals)) > 5, "the noise changes from report to report"
    mean = statistics.fmean(t for t in totals if t is not None)
    assert abs(mean - 1000) < 1.5  # scale 2 → sd of the mean ≈ 0.08
    variance = statistics.pvariance([t for t in totals if t is not None])
    assert 0.7 < variance / discrete_laplace_variance(SENSITIVITY / epsilon) < 1.3
    # A row outside the configured domain is not released at all under noise, and
    # a configured cell with no counts still gets noise (so existence reveals nothing).
    assert max(v or 0 for v in views) < 100
    assert any(v for v in views)


def test_noise_then_suppression(tmp_path: Path) -> None:
    data_dir = tmp_path
    hour = hour_key(datetime(2026, 10, 10, 12, tzinfo=UTC))
    labels = encode_labels({"route": "/search"})
    Store(data_dir).write({(hour, INSPECTED, labels): 3}, domain=[(INSPECTED, labels)])
    result = cli(
        "--from",
        "2026-10-10",
        "--to",
        "2026-10-10",
        "--format",
        "json",
        "--epsilon",
        "0.5",
        "--data-dir",
        str(data_dir),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["epsilon"] == 0.5
    assert any("noise" in note for note in report["notes"])
    value = report["totals"]["inspected"]
    assert value is None or value >= 10  # released only above k, after noise


def test_interventions_by_category_and_list(seeded: tuple[Path, object]) -> None:
    data_dir, truth = seeded
    start, end = day_range(date(2026, 10, 4), date(2026, 10, 31))
    report = build_report(Store(data_dir), start=start, end=end, min_count=0)
    categories = {s.name for s in report.interventions_by_category}
    assert categories == {"generic", "zorblax", "mirvel", "watch"}
    by_list = sum(sum(v or 0 for v in s.values) for s in report.interventions_by_list)
    assert by_list == truth.interventions  # type: ignore[attr-defined]
    assert sum(v or 0 for v in report.interventions_by_action.values()) == by_list
    assert report.interventions_by_action["block"] == truth.page_views  # type: ignore[attr-defined]
    assert "interventions_by_category" in to_csv(report)


def test_period_starts() -> None:
    start = datetime(2026, 10, 1, 22, tzinfo=UTC)
    assert [p.hour for p in period_starts(start, start + timedelta(hours=3), "hour")] == [22, 23, 0]
    days = period_starts(start, start + timedelta(days=2), "day")
    assert [d.day for d in days] == [1, 2, 3]
    weeks = period_starts(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC), "week"
    )
    assert [w.date().isoformat() for w in weeks] == ["2026-09-28", "2026-10-05", "2026-10-12"]
    assert INTERVENTIONS  # the metric names are the report's input
