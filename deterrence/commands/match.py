"""``deterrence match``: try queries against lists, from the command line or stdin."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator

from deterrence.commands._common import add_lists_option, lists_paths, load_or_report
from deterrence.matcher import Match, Matcher


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "match",
        help="match queries against lists",
        description="Match each QUERY (or each line of stdin) and print one line per query.",
    )
    add_lists_option(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("queries", nargs="*", metavar="QUERY")
    parser.set_defaults(handler=run)


def stdin_lines() -> Iterator[str]:
    """One query per line of stdin; bytes that are not UTF-8 become U+FFFD, so
    every input line still yields exactly one output line."""
    for raw in sys.stdin.buffer:
        yield raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")


def result(match: Match | None) -> dict[str, object]:
    if match is None:
        return {"matched": False, "action": None, "list": None, "category": None}
    return {
        "matched": True,
        "action": match.action,
        "list": match.list_id,
        "category": match.category,
        "term": match.term,
        "rule": match.rule,
        "transforms": list(match.transforms),
        "distance": match.distance,
        "hits": [hit.explain() for hit in match.hits],
    }


def describe(match: Match | None) -> str:
    if match is None:
        return "no match"
    what = f"term {match.term!r}" if match.term is not None else f"rule {match.rule!r}"
    via = ", ".join(match.transforms) or "exact"
    return f"{match.action}\t{match.list_id}\t{match.category}\t{what}\t{via}"


def run(args: argparse.Namespace) -> int:
    lists = load_or_report(lists_paths(args))
    if lists is None:
        return 1
    matcher = Matcher(lists)
    queries = args.queries or stdin_lines()
    for query in queries:
        match = matcher.match(query)
        line = json.dumps(result(match), ensure_ascii=False) if args.json else describe(match)
        print(line, flush=not args.queries)
    return 0
