"""The aggregate effectiveness report, built from the SQLite buckets.

One :class:`Report` answers: how many searches were inspected, how many met an
intervention (by category, list and action), how many warning pages were shown,
how many people clicked through to help — per message variant, with 95 % Wilson
intervals and tests between variants, and per help service — and how all of that
moved over time (per hour, day or week, and against the preceding window of the
same length). The dashboard shows a live Report; ``deterrence report`` writes one
as HTML, CSV or JSON.

Privacy (DESIGN §6, docs/privacy.md):

* every count below ``min_count`` (k, default 10) is replaced by ``None``
  ("<10"); a rate or interval built from a suppressed count is not shown, and a
  variant with a suppressed count is left out of the tests;
* with ``epsilon`` the counts get discrete Laplace noise (OpenDP) before anything
  else is computed. The unit of privacy is one search; we assume it adds at most 1
  to each of the four released tables (inspected, interventions, page views, help
  clicks), so the released vector has L1 sensitivity 4 and the noise scale is
  ``4 / epsilon``. Every cell of the configured label domain, in every period of
  both windows, gets noise — zeros included — so which cells exist reveals
  nothing. Totals, rates and trends are computed from the noisy cells
  (post-processing costs no privacy).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from deterrence import charts
from deterrence.metrics import HELP_CLICKS, INSPECTED, INTERVENTIONS, NO_VARIANT, PAGE_VIEWS
from deterrence.stats import (
    ChiSquare,
    chi_square_homogeneity,
    holm_adjust,
    two_proportion_z_test,
    wilson_interval,
)
from deterrence.store import Store

Period = Literal["hour", "day", "week"]
Format = Literal["html", "csv", "json"]
TABLES = (INSPECTED, INTERVENTIONS, PAGE_VIEWS, HELP_CLICKS)
SENSITIVITY = len(TABLES)
"""L1 sensitivity of the released vector: one search adds at most 1 to each table."""
TIMELINE = {
    INSPECTED: "inspected",
    INTERVENTIONS: "interventions",
    PAGE_VIEWS: "page_views",
    HELP_CLICKS: "help_clicks",
}
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

Count = int | None
"""A released count, or None where it is below the threshold."""
LabelKey = tuple[tuple[str, str], ...]
Noise = Callable[[list[int], float], list[int]]


class ReportError(Exception):
    """A report cannot be made as asked (for example, noise without OpenDP)."""


@dataclass(frozen=True)
class VariantResult:
    variant: str
    page_views: Count
    help_clicks: Count
    rate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    """Two-proportion z-test against the reference variant, Holm-adjusted."""
    reference: bool = False


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    """Exclusive."""
    period: Period
    min_count: int
    epsilon: float | None
    periods: tuple[datetime, ...]
    totals: Mapping[str, Count]
    previous_totals: Mapping[str, Count]
    """The same counts over the window of equal length just before ``start``."""
    timeline: Mapping[str, tuple[Count, ...]]
    interventions_by_category: tuple[charts.Series, ...]
    interventions_by_list: tuple[charts.Series, ...]
    interventions_by_action: Mapping[str, Count]
    click_through: float | None
    variants: tuple[VariantResult, ...]
    variant_test: ChiSquare | None
    services: tuple[tuple[str, Count], ...]
    notes: tuple[str, ...] = field(default=())

    def change(self, name: str) -> float | None:
        """Relative change of a total against the previous window."""
        now, before = self.totals.get(name), self.previous_totals.get(name)
        if now is None or before is None or before == 0:
            return None
        return (now - before) / before

    def period_label(self, moment: datetime) -> str:
        if self.period == "hour":
            return moment.strftime("%H:00")
        if self.period == "week":
            return "wk " + moment.strftime("%d %b")
        return moment.strftime("%d %b")


# --- periods -------------------------------------------------------------------


def period_start(moment: datetime, period: Period) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if period == "hour":
        return moment
    moment = moment.replace(hour=0)
    if period == "week":
        moment -= timedelta(days=moment.weekday())
    return moment


def period_starts(start: datetime, end: datetime, period: Period) -> list[datetime]:
    """Every period that overlaps [start, end), in order."""
    starts: list[datetime] = []
    moment = start
    while moment < end:
        first = period_start(moment, period)
        if not starts or starts[-1] != first:
            starts.append(first)
        moment += timedelta(hours=1)
    return starts


def default_period(start: datetime, end: datetime) -> Period:
    span = end - start
    if span <= timedelta(days=2):
        return "hour"
    if span <= timedelta(days=62):
        return "day"
    return "week"


def day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """[first 00:00 UTC, the day after last 00:00 UTC)."""
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return start, end


# --- noise ---------------------------------------------------------------------


def opendp_laplace(values: list[int], scale: float) -> list[int]:
    """Discrete Laplace noise of ``scale`` on integer counts, by OpenDP."""
    try:
        import opendp.prelude as dp
    except ImportError as exc:
        raise ReportError(
            "--epsilon needs OpenDP: pip install 'deterrence[dp]' (or opendp)"
        ) from exc
    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    measurement = dp.m.make_laplace(*space, scale=scale)
    noisy: list[int] = measurement(values)
    return noisy


def noise_scale(epsilon: float) -> float:
    if not epsilon > 0 or math.isinf(epsilon):
        raise ReportError("epsilon must be a positive number")
    return SENSITIVITY / epsilon


# --- building --------------------------------------------------------------------


def _key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


@dataclass
class _Table:
    """Counts of one metric by (window, period index, labels)."""

    cells: dict[tuple[bool, int, LabelKey], int]

    def sum_by(
        self, label: str | None, *, current: bool = True, per_period: bool = False
    ) -> dict[tuple[str, int], int]:
        sums: defaultdict[tuple[str, int], int] = defaultdict(int)
        for (is_current, index, key), n in self.cells.items():
            if is_current != current:
                continue
            name = dict(key).get(label, "") if label else ""
            sums[(name, index if per_period else 0)] += n
        return sums


def build_report(
    store: Store,
    *,
    start: datetime,
    end: datetime,
    period: Period | None = None,
    min_count: int = 10,
    epsilon: float | None = None,
    noise: Noise = opendp_laplace,
) -> Report:
    period = period or default_period(start, end)
    previous_start = start - (end - start)
    current_periods = period_starts(start, end, period)
    previous_periods = period_starts(previous_start, start, period)
    index = {
        True: {p: i for i, p in enumerate(current_periods)},
        False: {p: i for i, p in enumerate(previous_periods)},
    }
    scale = noise_scale(epsilon) if epsilon is not None else None

    tables: dict[str, _Table] = {}
    for metric in TABLES:
        domain = {_key(labels) for labels in store.domain(metric)}
        rows = store.counts(metric, start=previous_start, end=end)
        keys = set(domain)
        if scale is None:  # without noise, show everything that was counted
            keys |= {_key(row.labels) for row in rows}
        cells = {
            (window, i, key): 0
            for window in (True, False)
            for i in index[window].values()
            for key in keys
        }
        for row in rows:
            window = row.hour >= start
            key = _key(row.labels)
            if key in keys:
                cells[(window, index[window][period_start(row.hour, period)], key)] += row.value
        if scale is not None and cells:
            order = sorted(cells)
            noisy = noise([cells[c] for c in order], scale)
            cells = dict(zip(order, noisy, strict=True))
        tables[metric] = _Table(cells)

    def release(value: float) -> Count:
        count = max(0, round(value))
        return count if count >= min_count else None

    totals = {TIMELINE[m]: release(sum(t.sum_by(None).values())) for m, t in tables.items()}
    previous = {
        TIMELINE[m]: release(sum(t.sum_by(None, current=False).values())) for m, t in tables.items()
    }
    timeline = {}
    for metric, table in tables.items():
        sums = table.sum_by(None, per_period=True)
        timeline[TIMELINE[metric]] = tuple(
            release(sums.get(("", i), 0)) for i in range(len(current_periods))
        )

    def series_by(label: str) -> tuple[charts.Series, ...]:
        sums = tables[INTERVENTIONS].sum_by(label, per_period=True)
        names = sorted({name for name, _ in sums})
        return tuple(
            charts.Series(
                name, tuple(release(sums.get((name, i), 0)) for i in range(len(current_periods)))
            )
            for name in names
        )

    by_action = {
        name: release(n) for (name, _), n in sorted(tables[INTERVENTIONS].sum_by("action").items())
    }
    views = {name: n for (name, _), n in tables[PAGE_VIEWS].sum_by("variant").items()}
    clicks = {name: n for (name, _), n in tables[HELP_CLICKS].sum_by("variant").items()}
    variants, variant_test = _compare_variants(views, clicks, release)
    services = tuple(
        (name, release(n))
        for (name, _), n in sorted(
            tables[HELP_CLICKS].sum_by("service").items(), key=lambda item: (-item[1], item[0])
        )
    )
    views_total, clicks_total = totals["page_views"], totals["help_clicks"]
    click_through = (
        clicks_total / views_total
        if views_total and clicks_total is not None and views_total >= clicks_total
        else None
    )
    notes = []
    if min_count > 0:
        notes.append(f"Counts below {min_count} are shown as <{min_count}.")
    if epsilon is not None:
        notes.append(
            f"Counts carry discrete Laplace noise (epsilon = {epsilon:g} per search, "
            f"scale {SENSITIVITY / epsilon:.3g}); totals and rates are computed from noisy "
            "counts and intervals do not include the noise."
        )
    return Report(
        start=start,
        end=end,
        period=period,
        min_count=min_count,
        epsilon=epsilon,
        periods=tuple(current_periods),
        totals=totals,
        previous_totals=previous,
        timeline=timeline,
        interventions_by_category=series_by("category"),
        interventions_by_list=series_by("list"),
        interventions_by_action=by_action,
        click_through=click_through,
        variants=variants,
        variant_test=variant_test,
        services=services,
        notes=tuple(notes),
    )


def _compare_variants(
    views: Mapping[str, int], clicks: Mapping[str, int], release: Callable[[float], Count]
) -> tuple[tuple[VariantResult, ...], ChiSquare | None]:
    names = sorted(set(views) | (set(clicks) - {NO_VARIANT}))
    shown: dict[str, tuple[int, int]] = {}
    for name in names:
        v, c = release(views.get(name, 0)), release(clicks.get(name, 0))
        if v and c is not None and c <= v:
            shown[name] = (c, v)
    reference = (
        "control" if "control" in shown else max(shown, key=lambda n: shown[n][1], default=None)
    )
    others = [n for n in shown if n != reference]
    adjusted: dict[str, float] = {}
    if reference is not None and others:
        raw = [two_proportion_z_test(*shown[n], *shown[reference])[1] for n in others]
        adjusted = dict(zip(others, holm_adjust(raw), strict=True))
    results = []
    for name in names:
        if name in shown:
            c, v = shown[name]
            low, high = wilson_interval(c, v)
            results.append(
                VariantResult(
                    name, v, c, c / v, low, high, adjusted.get(name), reference=name == reference
                )
            )
        else:
            results.append(
                VariantResult(
                    name,
                    release(views.get(name, 0)),
                    release(clicks.get(name, 0)),
                    None,
                    None,
                    None,
                    None,
                )
            )
    test = chi_square_homogeneity(list(shown.values()))
    return tuple(results), test


# --- output --------------------------------------------------------------------


def suppressed(value: Count, min_count: int) -> str:
    return f"<{min_count}" if value is None else str(value)


def display_count(value: Count, min_count: int) -> str:
    return f"<{min_count}" if value is None else f"{value:,}"


def to_json(report: Report) -> str:
    data: dict[str, Any] = {
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "period": report.period,
        "min_count": report.min_count,
        "epsilon": report.epsilon,
        "notes": list(report.notes),
        "totals": dict(report.totals),
        "previous_totals": dict(report.previous_totals),
        "change": {name: report.change(name) for name in report.totals},
        "click_through": report.click_through,
        "timeline": [
            {"period": p.isoformat(), **{name: v[i] for name, v in report.timeline.items()}}
            for i, p in enumerate(report.periods)
        ],
        "interventions_by_category": {
            s.name: list(s.values) for s in report.interventions_by_category
        },
        "interventions_by_list": {s.name: list(s.values) for s in report.interventions_by_list},
        "interventions_by_action": dict(report.interventions_by_action),
        "variants": [asdict(v) for v in report.variants],
        "variant_test": (
            {"test": "chi-square homogeneity", **asdict(report.variant_test)}
            if report.variant_test
            else None
        ),
        "services": [{"service": s, "help_clicks": n} for s, n in report.services],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def csv_rows(report: Report) -> Iterable[tuple[str, str, str, str]]:
    """Long format: (section, period, key, value); suppressed counts read ``<k``."""
    k = report.min_count

    def count(value: Count) -> str:
        return suppressed(value, k)

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.6g}"

    for name, value in report.totals.items():
        yield ("total", "", name, count(value))
        yield ("previous_total", "", name, count(report.previous_totals.get(name)))
        yield ("change", "", name, number(report.change(name)))
    yield ("total", "", "click_through", number(report.click_through))
    for i, moment in enumerate(report.periods):
        label = moment.isoformat()
        for name, values in report.timeline.items():
            yield ("timeline", label, name, count(values[i]))
        for s in report.interventions_by_category:
            yield ("interventions_by_category", label, s.name, count(s.values[i]))
        for s in report.interventions_by_list:
            yield ("interventions_by_list", label, s.name, count(s.values[i]))
    for action, value in report.interventions_by_action.items():
        yield ("interventions_by_action", "", action, count(value))
    for v in report.variants:
        yield ("variant_page_views", "", v.variant, count(v.page_views))
        yield ("variant_help_clicks", "", v.variant, count(v.help_clicks))
        yield ("variant_click_through", "", v.variant, number(v.rate))
        yield ("variant_ci95_low", "", v.variant, number(v.low))
        yield ("variant_ci95_high", "", v.variant, number(v.high))
        yield ("variant_p_value_vs_reference", "", v.variant, number(v.p_value))
    if report.variant_test:
        yield ("variant_chi_square", "", "statistic", number(report.variant_test.statistic))
        yield ("variant_chi_square", "", "df", str(report.variant_test.df))
        yield ("variant_chi_square", "", "p_value", number(report.variant_test.p_value))
    for service, value in report.services:
        yield ("service_help_clicks", "", service, count(value))


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "period", "key", "value"))
    writer.writerows(csv_rows(report))
    return buffer.getvalue()


def template_environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["count"] = display_count
    environment.filters["percent"] = lambda value: "—" if value is None else f"{value * 100:.1f} %"
    environment.filters["p_value"] = format_p_value
    environment.filters["p_text"] = lambda value: (
        "p < 0.001" if value < 0.001 else f"p = {format_p_value(value)}"
    )
    environment.filters["change"] = format_change
    return environment


def format_p_value(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def format_change(value: float | None) -> str:
    if value is None:
        return "—"
    percent = value * 100
    text = f"{percent:+.1f} %" if abs(percent) < 10 else f"{percent:+.0f} %"
    if text.lstrip("+-") in ("0.0 %", "0 %"):
        return "• 0 %"
    return ("▲ " if percent > 0 else "▼ ") + text


def report_charts(report: Report) -> dict[str, Markup]:
    """The report's charts, sized for half-width cards (``reach``: full width)."""
    labels = [report.period_label(p) for p in report.periods]
    k = report.min_count
    half = 560
    return {
        "by_category": charts.stacked_bars(
            labels,
            report.interventions_by_category,
            title="Interventions by category",
            width=half,
        ),
        "by_list": charts.stacked_bars(
            labels, report.interventions_by_list, title="Interventions by list", width=half
        ),
        "reach": charts.stacked_bars(
            labels,
            [
                charts.Series("warning pages shown", report.timeline["page_views"]),
                charts.Series("help clicks", report.timeline["help_clicks"]),
            ],
            title="Warning pages and help clicks",
            width=half,
            grouped=True,
        ),
        "variants": charts.interval_plot(
            [
                charts.Interval(v.variant, v.rate, v.low, v.high, highlight=v.reference)
                for v in report.variants
            ],
            title="Help click-through by message variant, with 95 % intervals",
            threshold=k,
            width=half,
        ),
        "services": charts.horizontal_bars(
            report.services, title="Help clicks by service", threshold=k, width=half
        ),
    }


def sparklines(report: Report) -> dict[str, Markup]:
    return {
        name: charts.sparkline(values, title=f"{name} per {report.period}")
        for name, values in report.timeline.items()
    }


def stylesheet() -> tuple[Markup, str]:
    """The shared CSS and its CSP hash (``style-src 'sha256-…'``): pages inline it
    and still allow no inline style other than exactly this one."""
    css = (TEMPLATES_DIR / "deterrence.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return Markup(css), digest


def to_html(report: Report) -> str:
    css, css_hash = stylesheet()
    return (
        template_environment()
        .get_template("report.html")
        .render(
            report=report,
            charts=report_charts(report),
            sparks=sparklines(report),
            css=css,
            css_hash=css_hash,
            one_day=timedelta(days=1),
            generated=datetime.now(UTC),
        )
    )


def render(report: Report, output_format: Format) -> str:
    if output_format == "json":
        return to_json(report)
    if output_format == "csv":
        return to_csv(report)
    return to_html(report)
