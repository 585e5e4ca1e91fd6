"""The ``deterrence`` command. Each subcommand lives in its own module under
``deterrence.commands`` and registers itself through ``register(subparsers)``;
the chosen subcommand's ``handler(args)`` returns the exit status."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "match",
    "lists",
    "demo",
    "pages",
    "proxy",
    "authz",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deterrence",
        description="Search-time deterrence: match queries against term lists, serve warnings.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"deterrence.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    return status
