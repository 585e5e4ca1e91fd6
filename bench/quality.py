"""Matcher quality: recall per evasion class and false positives (DESIGN §4, §7).

Runs :func:`deterrence.evaluation.evaluate` (invented terms only; deterministic for a
seed) and prints the table. Exit status 1 when a §7 target is missed.

    python -m bench.quality [--seed N] [--per-class 400] [--innocent 20000] [--terms 2000]
"""

from __future__ import annotations

import argparse
import sys

from deterrence.evaluation import EvalConfig, evaluate, format_report


def main(argv: list[str] | None = None) -> int:
    defaults = EvalConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--per-class", type=int, default=defaults.per_class)
    parser.add_argument("--innocent", type=int, default=defaults.innocent_queries)
    parser.add_argument("--terms", type=int, default=defaults.list_terms)
    parser.add_argument("--examples", type=int, default=3, help="wrong outcomes shown per class")
    args = parser.parse_args(argv)
    config = EvalConfig(
        seed=args.seed,
        per_class=args.per_class,
        innocent_queries=args.innocent,
        list_terms=args.terms,
    )
    report = evaluate(config)
    print(format_report(report, examples=args.examples))
    return 1 if report.shortfalls() else 0


if __name__ == "__main__":
    sys.exit(main())
