"""What a reload that adds one term costs the searches after it, in matching work:
matchers grown one from another sharing their word memo (``Matcher.extended``,
deterrence.matcher._Lineage) against each grown matcher starting with fresh memos,
as every reload did before.

Two lineages of matchers over bench.matcher's invented terms are grown side by side
by the same rewrites (one more term each, as bench.soak does). Between rewrites each
answers the same searches: bench.soak's mix, four from the load's long tail to one
from the probe's pool, ``--per-cycle`` of them (bench.soak's rates over its 5 s
cycle: 4,640). The two take turns in slices of a few hundred searches, so that a
change in the machine's load falls on both. The answers must be equal. Printed:
µs per search (mean), and how many words each looked up in the fuzzy index.

    python -m bench.reload_memo [--terms 5000] [--cycles 30] [--per-cycle 4640]
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
from pathlib import Path

from bench.matcher import make_workload, term_line, write_list_lines
from bench.soak import PROBE_QUERIES, invented_term
from deterrence import evaluation
from deterrence.lists import ParsedFiles
from deterrence.matcher import Matcher

SLICE = 232
"""Searches each lineage answers in turn."""
WARM_CYCLES = 5
"""Cycles left out of the figures: the memos are filling."""


def count_lookups(matcher: Matcher) -> list[int]:
    """How many words ``matcher`` looks up in its fuzzy index, counted from now
    (the list's one item)."""
    count = [0]
    index = matcher._fuzzy
    look_up = index.candidates

    def counting(text: str, found: dict[int, int]) -> None:
        count[0] += 1
        look_up(text, found)

    index.candidates = counting  # type: ignore[method-assign]
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terms", type=int, default=5000)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--per-cycle", type=int, default=4640)
    args = parser.parse_args(argv)
    workload = make_workload(args.terms, 30_000, 0, evaluation.load_vocabulary())
    load = [query for _, query in workload["mix"]]
    lines = [term_line(term) for term in workload["terms"]]
    evaluation.load_vocabulary.cache_clear()
    gc.collect()
    gc.freeze()
    rng = random.Random(3)
    probe = rng.sample(load, PROBE_QUERIES)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.toml"
        write_list_lines(path, lines, list_id="bench", version=1)
        parsed = ParsedFiles()
        first = parsed.load_lists([path])
        matchers = {"fresh memos": Matcher(first), "shared word memo": Matcher(first)}
        seconds = dict.fromkeys(matchers, 0.0)
        lookups = dict.fromkeys(matchers, 0)
        counts: dict[str, list[int]] = {}
        searches = 0
        for cycle in range(args.cycles):
            lines.append(term_line(invented_term(rng)))
            write_list_lines(path, lines, list_id="bench", version=cycle + 2)
            lists = parsed.load_lists([path])
            for name, matcher in matchers.items():
                grown = matcher.extended(lists)
                assert grown is not None
                if name == "fresh memos":
                    grown.memo_size = grown.memo_size  # as every reload did before
                counts[name] = count_lookups(grown)
                matchers[name] = grown
            queries = [
                rng.choice(probe) if i % 5 == 4 else rng.choice(load) for i in range(args.per_cycle)
            ]
            for start in range(0, len(queries), SLICE):
                order = list(matchers) if start // SLICE % 2 == 0 else list(reversed(matchers))
                answers = []
                for name in order:
                    matcher = matchers[name]
                    began = time.perf_counter()
                    answers.append([matcher.match(q) for q in queries[start : start + SLICE]])
                    if cycle >= WARM_CYCLES:
                        seconds[name] += time.perf_counter() - began
                if answers[0] != answers[1]:
                    raise AssertionError(f"cycle {cycle}: the two lineages answer differently")
            if cycle >= WARM_CYCLES:
                searches += len(queries)
                for name, count in counts.items():
                    lookups[name] += count[0]
    print(
        f"{args.terms:,} terms, {args.cycles - WARM_CYCLES} reloads measured,"
        f" {args.per_cycle:,} searches between reloads"
    )
    print()
    print("| | µs per search | words looked up in the index |")
    print("| --- | ---: | ---: |")
    for name in matchers:
        print(f"| {name} | {seconds[name] / searches * 1e6:.1f} | {lookups[name]:,} |")
    fresh, shared = seconds["fresh memos"], seconds["shared word memo"]
    print()
    print(f"fresh / shared: {fresh / shared:.2f}×")


if __name__ == "__main__":
    main()
