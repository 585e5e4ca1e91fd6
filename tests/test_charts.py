"""The SVG charts: well-formed, CSP-friendly, honest about suppressed counts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from deterrence.charts import (
    Interval,
    Series,
    horizontal_bars,
    interval_plot,
    nice_ticks,
    sparkline,
    stacked_bars,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    namespaced = str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    return ET.fromstring(namespaced)


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


def test_stacked_bars_draw_values_and_skip_suppressed_ones() -> None:
    svg = stacked_bars(
        ["1 Nov", "2 Nov", "3 Nov"],
        [Series("zorblax", [12, None, 30]), Series("<mirvel> & co", [20, 15, None])],
        title="Interventions",
    )
    root = parse(svg)
    assert root.find(f"{SVG}title").text == "Interventions"  # type: ignore[union-attr]
    assert "2 small counts not drawn" in root.find(f"{SVG}desc").text  # type: ignore[operator, union-attr]
    drawn = [r.find(f"{SVG}title").text for r in bars(root)]  # type: ignore[union-attr]
    assert drawn == [
        "1 Nov · zorblax: 12",
        "1 Nov · <mirvel> & co: 20",
        "2 Nov · <mirvel> & co: 15",
        "3 Nov · zorblax: 30",
    ]
    assert "style=" not in svg and "<script" not in svg  # CSP: no inline styles or scripts


def test_grouped_bars_sit_side_by_side() -> None:
    root = parse(
        stacked_bars(["a"], [Series("x", [10]), Series("y", [5])], title="t", grouped=True)
    )
    first, second = bars(root)
    assert float(first.get("x", 0)) < float(second.get("x", 0))
    assert float(first.get("y", 0)) < float(second.get("y", 0))  # the taller bar starts higher


def test_all_suppressed_says_so() -> None:
    svg = stacked_bars(["a", "b"], [Series("x", [None, None])], title="t")
    assert "too small to show" in svg


def test_horizontal_bars_show_the_threshold_for_suppressed_items() -> None:
    root = parse(
        horizontal_bars([("stop-it-now", 120), ("helpline", None)], title="t", threshold=10)
    )
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "120" in texts and "<10" in texts


def test_interval_plot() -> None:
    svg = interval_plot(
        [Interval("control", 0.08, 0.06, 0.1, highlight=True), Interval("harm", None, None, None)],
        title="Click-through",
    )
    root = parse(svg)
    circles = list(root.iter(f"{SVG}circle"))
    assert len(circles) == 1
    assert "8.0 %" in circles[0].find(f"{SVG}title").text  # type: ignore[operator, union-attr]
    assert "too few to show" in svg


def test_sparkline_breaks_at_suppressed_points() -> None:
    root = parse(sparkline([5, 7, None, 9, 12], title="t"))
    assert len(list(root.iter(f"{SVG}polyline"))) == 2


def test_nice_ticks() -> None:
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(270) == [0, 100, 200, 300]
    assert nice_ticks(1.8)[-1] >= 1.8
