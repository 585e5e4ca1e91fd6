"""``deterrence report``: the aggregate effectiveness report (HTML, CSV or JSON)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="aggregate effectiveness report",
        description="Interventions, warning pages, help click-through per message variant and "
        "per service, and their trend, from the aggregate store. Counts below --min-count are "
        "suppressed; --epsilon adds differential-privacy noise (see docs/privacy.md).",
    )
    today = datetime.now(UTC).date()
    parser.add_argument(
        "--from",
        dest="first",
        type=_date,
        default=today - timedelta(days=29),
        metavar="DATE",
        help="first day, UTC (default: 30 days ago)",
    )
    parser.add_argument(
        "--to",
        dest="last",
        type=_date,
        default=today,
        metavar="DATE",
        help="last day, inclusive (default: today)",
    )
    parser.add_argument("--format", choices=("html", "csv", "json"), default="html")
    parser.add_argument(
        "--period",
        choices=("hour", "day", "week"),
        help="trend resolution (default: hour up to 2 days, day up to 62, else week)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the aggregate store's directory (default: DETERRENCE_DATA_DIR or ./deterrence-data)",
    )
    parser.add_argument(
        "--epsilon",
        type=_positive,
        metavar="E",
        help="add discrete Laplace noise for epsilon-differential privacy per search",
    )
    parser.add_argument(
        "--min-count",
        type=_count,
        metavar="K",
        help="suppress counts below K (default: DETERRENCE_MIN_COUNT or 10)",
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write here instead of stdout"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deterrence.report import ReportError, build_report, day_range, render
    from deterrence.settings import Settings
    from deterrence.store import FILENAME, Store

    if args.last < args.first:
        print("error: --to is before --from", file=sys.stderr)
        return 2
    settings = Settings()
    data_dir: Path = args.data_dir or settings.data_dir
    min_count: int = settings.min_count if args.min_count is None else args.min_count
    if not (data_dir / FILENAME).exists():
        print(f"error: no aggregate store at {data_dir / FILENAME}", file=sys.stderr)
        return 1
    start, end = day_range(args.first, args.last)
    try:
        report = build_report(
            Store(data_dir),
            start=start,
            end=end,
            period=args.period,
            min_count=min_count,
            epsilon=args.epsilon,
        )
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = render(report, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
