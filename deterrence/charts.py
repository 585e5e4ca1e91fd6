"""Server-rendered SVG charts for the dashboard and the HTML report.

No JavaScript and nothing from another origin: each chart is an inline ``<svg>``
that draws with presentation attributes (``fill=``, ``stroke=``) rather than
``style=`` attributes, so a strict Content-Security-Policy needs no
``'unsafe-inline'``. Every chart has a ``<title>`` and a ``<desc>`` for screen
readers; pages show the same numbers in a table next to it.

A value of ``None`` is a suppressed count (below the threshold k): it is not
drawn, and the chart says so rather than drawing it as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#555555",
)
INK = "#1f2933"
MUTED = "#6b7785"
GRID = "#e3e7ec"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int | None]


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least ``maximum``."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step) * step
    return [i * step for i in range(round(top / step) + 1)]


def format_number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.2g}"


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" '
        f'font-family="{FONT}" font-size="12" fill="{INK}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, **attributes: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(text)}</text>'


def _legend(series: Sequence[Series], x: float, y: float, width: float) -> tuple[list[str], float]:
    parts: list[str] = []
    cursor_x, cursor_y = x, y
    for index, item in enumerate(series):
        label_width = 22 + 7 * len(item.name)
        if cursor_x + label_width > x + width and cursor_x > x:
            cursor_x, cursor_y = x, cursor_y + 18
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{cursor_x:.1f}" y="{cursor_y - 9:.1f}" width="10" height="10" '
            f'rx="2" fill="{colour}"/>'
        )
        parts.append(_text(cursor_x + 15, cursor_y, item.name))
        cursor_x += label_width + 12
    return parts, cursor_y + 18


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    width: int = 760,
    height: int = 260,
    grouped: bool = False,
) -> Markup:
    """Columns, one group per period, one colour per series: stacked (parts of a
    whole) or, with ``grouped``, side by side (for series that overlap)."""
    legend, legend_bottom = _legend(series, 56, 16, width - 72)
    top, bottom, left, right = legend_bottom + 4, 28, 56, 16
    plot_h = height - top - bottom
    plot_w = width - left - right
    if grouped:
        totals = [max((s.values[i] or 0 for s in series), default=0) for i in range(len(labels))]
    else:
        totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    ticks = nice_ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    body = list(legend)
    for tick in ticks:
        y = top + plot_h - tick * scale
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        body.append(_text(left - 8, y + 4, format_number(tick), text_anchor="end", fill=MUTED))
    slot = plot_w / max(len(labels), 1)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    label_w = 7 * max((len(label) for label in labels), default=1) + 12
    label_every = max(1, math.ceil(len(labels) * label_w / plot_w))
    suppressed = 0
    part_w = bar_w / len(series) if grouped and series else bar_w
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h
        for index, item in enumerate(series):
            value = item.values[i]
            if value is None:
                suppressed += 1
                continue
            if value <= 0:
                continue
            h = value * scale
            if grouped:
                part_x, y = x + index * part_w, top + plot_h - h
            else:
                part_x, y = x, y - h
            colour = PALETTE[index % len(PALETTE)]
            body.append(
                f'<rect x="{part_x:.1f}" y="{y:.1f}" width="{part_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)} · {escape(item.name)}: '
                f"{value:,}</title></rect>"
            )
        if i % label_every == 0:
            body.append(_text(x + bar_w / 2, height - 10, label, text_anchor="middle", fill=MUTED))
    body.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h:.1f}" '
        f'y2="{top + plot_h:.1f}" stroke="{MUTED}" stroke-width="1"/>'
    )
    if suppressed and not any(totals):
        body.append(
            _text(
                left + plot_w / 2,
                top + plot_h / 2,
                "Every count here is too small to show: choose a longer range.",
                text_anchor="middle",
                fill=MUTED,
            )
        )
    desc = f"{len(labels)} periods, {len(series)} series"
    if suppressed:
        desc += f"; {suppressed} small counts not drawn"
    return _svg(width, height, title, desc, body)


def horizontal_bars(
    items: Sequence[tuple[str, int | None]],
    *,
    title: str,
    threshold: int,
    width: int = 760,
    colour: str = PALETTE[0],
) -> Markup:
    """One bar per item, longest first as given; suppressed values say ``<k``."""
    row_h, top, left, right = (
        28,
        8,
        min(260, 16 + 7 * max((len(n) for n, _ in items), default=4)),
        64,
    )
    height = top + row_h * max(len(items), 1) + 8
    maximum = max((v for _, v in items if v is not None), default=0) or 1
    plot_w = width - left - right
    body: list[str] = []
    for i, (name, value) in enumerate(items):
        y = top + i * row_h
        body.append(_text(left - 10, y + 18, name, text_anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 5:.1f}" width="{plot_w}" height="18" rx="3" fill="{GRID}"/>'
        )
        if value is None:
            body.append(_text(left + 8, y + 18, f"<{threshold}", fill=MUTED))
            continue
        w = plot_w * value / maximum
        body.append(
            f'<rect x="{left}" y="{y + 5:.1f}" width="{w:.1f}" height="18" rx="3" fill="{colour}"/>'
        )
        body.append(_text(left + w + 6, y + 18, f"{value:,}"))
    return _svg(width, height, title, f"{len(items)} bars", body)


@dataclass(frozen=True)
class Interval:
    name: str
    estimate: float | None
    low: float | None
    high: float | None
    highlight: bool = False


def interval_plot(
    rows: Sequence[Interval], *, title: str, width: int = 760, threshold: int = 10
) -> Markup:
    """Proportions as dots with 95 % interval whiskers, on a percent axis."""
    row_h, top, bottom = 30, 10, 30
    left = min(220, 24 + 7 * max((len(r.name) for r in rows), default=4))
    right = 24
    height = top + row_h * max(len(rows), 1) + bottom
    plot_w = width - left - right
    highs = [r.high for r in rows if r.high is not None]
    ticks = nice_ticks(max(highs, default=0.1) * 100, count=5)
    scale = plot_w / ticks[-1]
    body: list[str] = []
    axis_y = top + row_h * max(len(rows), 1)
    for tick in ticks:
        x = left + tick * scale
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{axis_y}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        body.append(
            _text(x, axis_y + 18, f"{format_number(tick)} %", text_anchor="middle", fill=MUTED)
        )
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        body.append(_text(left - 12, y + 4, row.name, text_anchor="end"))
        if row.estimate is None or row.low is None or row.high is None:
            body.append(_text(left + 6, y + 4, f"too few to show (<{threshold})", fill=MUTED))
            continue
        colour = PALETTE[1] if row.highlight else PALETTE[0]
        x_low, x_high = left + row.low * 100 * scale, left + row.high * 100 * scale
        x = left + row.estimate * 100 * scale
        body.append(
            f'<line x1="{x_low:.1f}" x2="{x_high:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="3" stroke-linecap="round"/>'
        )
        for edge in (x_low, x_high):
            body.append(
                f'<line x1="{edge:.1f}" x2="{edge:.1f}" y1="{y - 6:.1f}" y2="{y + 6:.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colour}" stroke="#ffffff" '
            f'stroke-width="2"><title>{escape(row.name)}: {row.estimate * 100:.1f} % '
            f"(95 % CI {row.low * 100:.1f}–{row.high * 100:.1f} %)</title></circle>"
        )
    return _svg(width, height, title, f"{len(rows)} proportions with 95 % intervals", body)


def sparkline(
    values: Sequence[int | None], *, title: str, width: int = 160, height: int = 36
) -> Markup:
    """A small line of a series; suppressed points break the line."""
    known = [v for v in values if v is not None]
    maximum = max(known, default=0) or 1
    step = (width - 4) / max(len(values) - 1, 1)
    segments: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            segments.append([])
            continue
        x = 2 + i * step
        y = height - 3 - (height - 6) * value / maximum
        segments[-1].append(f"{x:.1f},{y:.1f}")
    body = [
        f'<polyline points="{" ".join(points)}" fill="none" stroke="{PALETTE[0]}" '
        f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>'
        for points in segments
        if len(points) > 1
    ]
    return Markup(
        f'<svg class="spark" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )
