"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deterrence.lists import ListError, TermList, load_lists


def add_lists_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lists",
        action="append",
        type=Path,
        metavar="PATH",
        help="a list file or a directory of them; repeatable "
        "(default: DETERRENCE_LISTS, else the shipped demo lists)",
    )


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given on the command line, so DETERRENCE_* applies otherwise."""
    return {"lists": args.lists} if args.lists else {}


def lists_paths(args: argparse.Namespace) -> list[Path]:
    from deterrence.settings import Settings

    paths: list[Path] | None = args.lists
    return paths or Settings().lists


def report_list_error(error: ListError) -> None:
    for problem in error.problems:
        print(f"error: {problem}", file=sys.stderr)


def load_or_report(paths: list[Path]) -> tuple[TermList, ...] | None:
    """Load lists, printing every problem to stderr on failure."""
    try:
        return load_lists(paths)
    except ListError as exc:
        report_list_error(exc)
        return None
