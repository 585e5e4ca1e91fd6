"""``deterrence pages check [PATH]``: validate the help-services directory.

Invalid data is an error (exit 1). Entries not re-verified within a year are
warnings, because a helpline that has changed its number fails the person who
calls it; they fail the check only with ``--strict``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import date
from pathlib import Path

from deterrence.resources import PAGES_DIR
from deterrence.services import INTERNATIONAL, HelpDirectory, ServicesError

DEFAULT_PATH = PAGES_DIR / "help_services.toml"
MAX_AGE_DAYS = 365


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("pages", help="warning-page assets: check the help directory")
    commands = parser.add_subparsers(dest="pages_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate help_services.toml and flag entries due for re-verification",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=DEFAULT_PATH,
        metavar="PATH",
        help="help-services file (default: the shipped pages/help_services.toml)",
    )
    check.add_argument(
        "--today",
        type=_iso_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="date to measure verification age against (default: today)",
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too (for CI)")
    check.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace) -> int:
    path: Path = args.path
    today: date = args.today or date.today()
    try:
        directory = HelpDirectory.load(path)
    except ServicesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    warnings: list[str] = []
    for service in directory.stale(today, MAX_AGE_DAYS):
        age = (today - service.verified).days
        warnings.append(
            f"{service.id}: last verified {service.verified.isoformat()} ({age} days ago); "
            f"re-check the phone number and address against {service.source}"
        )
    for service in directory.services.values():
        if service.verified > today:
            warnings.append(
                f"{service.id}: verified date {service.verified.isoformat()} is after "
                f"{today.isoformat()}"
            )
    for warning in warnings:
        print(f"warning: {path}: {warning}", file=sys.stderr)

    per_country: Counter[str] = Counter(
        country for service in directory.services.values() for country in service.countries
    )
    print(f"{path}: {len(directory.services)} services, {len(warnings)} warning(s)")
    for country in sorted(per_country, key=lambda c: (c == INTERNATIONAL, c)):
        print(f"  {country:<4}{per_country[country]:>3}")
    return 1 if warnings and args.strict else 0


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-11-22, got {value!r}"
        ) from None
