"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deterrence.lists import ListError, TermList, load_lists
from deterrence.resources import KEYWORD_LISTS_DIR


def add_lists_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lists",
        action="append",
        type=Path,
        metavar="PATH",
        help="a list file or a directory of them; repeatable (default: the shipped demo lists)",
    )


def lists_paths(args: argparse.Namespace) -> list[Path]:
    paths: list[Path] | None = args.lists
    return paths or [KEYWORD_LISTS_DIR]


def load_or_report(paths: list[Path]) -> tuple[TermList, ...] | None:
    """Load lists, printing every problem to stderr on failure."""
    try:
        return load_lists(paths)
    except ListError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None
