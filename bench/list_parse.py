"""What a reload that adds one term costs the warm build process to parse
(deterrence.child_build, ``ParsedFiles``): the list file read whole, against read
on top of its last parse (deterrence.list_layout: only the appended line and what
lies outside the array).

For lists of bench.matcher's invented terms at each size, the file is rewritten
``--rewrites`` times as bench.soak does (a new version line and one more term at
the end of the array), and each rewrite is loaded both ways in turn (the whole
parse with its term checks cached, as the warm process has them); the answers
must be equal, and equal to ``load_lists``'s. Printed: CPU ms per load, p50 /
max, and the ratio whole / on top.

    python -m bench.list_parse [--sizes 1000,10000,100000] [--rewrites 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.matcher import make_workload, term_line, write_list_lines
from deterrence import evaluation
from deterrence.lists import ParsedFiles, TermList, load_lists


def timed(load: Callable[[], tuple[TermList, ...]]) -> tuple[tuple[TermList, ...], float]:
    started = time.process_time()
    lists = load()
    return lists, time.process_time() - started


def measure(size: int, rewrites: int, directory: Path) -> tuple[list[float], list[float]]:
    """CPU seconds per load of each rewrite: whole, and on top of the last parse."""
    terms = make_workload(size, 0, 0, evaluation.load_vocabulary())["terms"]
    lines = [term_line(term) for term in terms]
    path = directory / f"bench-{size}.toml"
    write_list_lines(path, lines, list_id="bench", version=1)
    parsed, forgetful = ParsedFiles(), ParsedFiles()
    parsed.load_lists([path])
    forgetful.load_lists([path])  # its term checks cached, as the warm process has them
    whole: list[float] = []
    on_top: list[float] = []
    for version in range(2, rewrites + 2):
        lines.append(term_line(f"zorbqux{version}wort"))
        write_list_lines(path, lines, list_id="bench", version=version)
        forgetful._parsed.clear()  # no last parse to read on top of: the whole file
        expected, seconds = timed(lambda: forgetful.load_lists([path]))
        whole.append(seconds)
        got, seconds = timed(lambda: parsed.load_lists([path]))
        on_top.append(seconds)
        if got != expected or got != load_lists([path]):
            raise AssertionError(f"{size} terms, rewrite {version}: the loads differ")
    return whole, on_top


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.list_parse", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rewrites", type=int, default=20)
    args = parser.parse_args(argv)
    print("a list that gained one term, loaded again: CPU ms, p50 / max")
    print(f"{'terms':>8} {'whole':>17} {'on top of the last':>19} {'whole / on top':>15}")
    with tempfile.TemporaryDirectory() as directory:
        for size in map(int, args.sizes.split(",")):
            whole, on_top = measure(size, args.rewrites, Path(directory))
            ratio = statistics.median(whole) / statistics.median(on_top)
            cells = [
                f"{statistics.median(s) * 1e3:.2f} / {max(s) * 1e3:.2f}" for s in (whole, on_top)
            ]
            print(f"{size:>8,} {cells[0]:>17} {cells[1]:>19} {ratio:>14.0f}×")


if __name__ == "__main__":
    main()
