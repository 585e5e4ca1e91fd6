"""Fill a Store with plausible invented traffic, the way a Recorder would have.

Used by the dashboard and report tests. Lists, variants and services are invented
stand-ins; the numbers are drawn from a seeded generator so runs repeat.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deterrence.metrics import (
    ACTIONS,
    ERRORS,
    HELP_CLICKS,
    INSPECTED,
    INTERVENTIONS,
    NO_VARIANT,
    PAGE_VIEWS,
)
from deterrence.store import ListState, ReloadEvent, Store, encode_labels, hour_key

LISTS = (
    ("demo-generic", "generic", "block", 1200),
    ("demo-zorblax", "zorblax", "block", 340),
    ("demo-mirvel", "mirvel", "warn", 85),
    ("demo-watch", "watch", "count", 40),
)
VARIANTS = {"control": 0.08, "harm": 0.15, "legal": 0.11}
"""Message variant -> click-through rate used to draw help clicks."""
SERVICES = {"stop-it-now": 0.55, "helpline-de": 0.2, "chat-int": 0.15, "report-line": 0.10}
LOCALES = ("en", "de")


@dataclass(frozen=True)
class Truth:
    """Exact totals written, to compare reports with."""

    inspected: int
    interventions: int
    page_views: int
    help_clicks: int
    views_by_variant: dict[str, int]
    clicks_by_variant: dict[str, int]


def seed(store: Store, *, end: datetime, days: int, scale: float = 1.0, rng_seed: int = 7) -> Truth:
    rng = random.Random(rng_seed)
    counts: defaultdict[tuple[str, str, str], int] = defaultdict(int)
    views_by_variant: defaultdict[str, int] = defaultdict(int)
    clicks_by_variant: defaultdict[str, int] = defaultdict(int)
    totals = defaultdict(int)

    def add(hour: str, metric: str, labels: dict[str, str], n: int) -> None:
        if n:
            counts[(hour, metric, encode_labels(labels))] += n
            totals[metric] += n

    start = end - timedelta(days=days)
    moment = start
    while moment < end:
        hour = hour_key(moment)
        # Fewer searches at night, a slow upward trend over the period.
        daily = 0.55 + 0.45 * abs(12 - moment.hour) / 12
        trend = 1 + 0.3 * (moment - start) / (end - start)
        searches = int(rng.gauss(400, 40) * daily * trend * scale)
        add(hour, INSPECTED, {"route": "/search"}, max(searches, 0))
        for list_id, category, action, _ in LISTS:
            weight = {"generic": 0.012, "zorblax": 0.006, "mirvel": 0.004, "watch": 0.003}[category]
            matched = sum(rng.random() < weight for _ in range(max(searches, 0)))
            for _ in range(matched):
                variant = NO_VARIANT if action == "count" else rng.choice(list(VARIANTS))
                add(
                    hour,
                    INTERVENTIONS,
                    {"list": list_id, "category": category, "action": action, "variant": variant},
                    1,
                )
                if action != "block":
                    continue
                add(hour, PAGE_VIEWS, {"variant": variant, "locale": rng.choice(LOCALES)}, 1)
                views_by_variant[variant] += 1
                if rng.random() < VARIANTS[variant]:
                    service = rng.choices(list(SERVICES), weights=list(SERVICES.values()))[0]
                    add(hour, HELP_CLICKS, {"service": service, "variant": variant}, 1)
                    clicks_by_variant[variant] += 1
        if rng.random() < 0.02:
            add(hour, ERRORS, {"kind": "decode"}, rng.randint(1, 20))
        moment += timedelta(hours=1)

    domain = [(INSPECTED, encode_labels({"route": "/search"}))]
    for list_id, category, action, _ in LISTS:
        for variant in [NO_VARIANT] if action == "count" else VARIANTS:
            labels = {"list": list_id, "category": category, "action": action, "variant": variant}
            domain.append((INTERVENTIONS, encode_labels(labels)))
    for variant in VARIANTS:
        for locale in LOCALES:
            domain.append((PAGE_VIEWS, encode_labels({"variant": variant, "locale": locale})))
        for service in SERVICES:
            domain.append((HELP_CLICKS, encode_labels({"service": service, "variant": variant})))
    assert set(ACTIONS) >= {action for _, _, action, _ in LISTS}
    store.write(
        counts,
        domain=domain,
        lists=[
            ListState(list_id, category, action, "2026-11-01", terms, end - timedelta(hours=3))
            for list_id, category, action, terms in LISTS
        ],
        reloads=[
            ReloadEvent(end - timedelta(hours=5), "error", "keyword_lists/demo.toml:12: bad id"),
            ReloadEvent(end - timedelta(hours=3), "ok"),
        ],
    )
    return Truth(
        inspected=totals[INSPECTED],
        interventions=totals[INTERVENTIONS],
        page_views=totals[PAGE_VIEWS],
        help_clicks=totals[HELP_CLICKS],
        views_by_variant=dict(views_by_variant),
        clicks_by_variant=dict(clicks_by_variant),
    )


def utc_hour(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)
