"""Matcher speed, memory and recall against two baselines (DESIGN §7).

For lists of 1,000, 10,000 and 100,000 invented terms (mostly 1-3 word phrases, some
``substring``, some ``fuzzy = false``, some Cyrillic and CJK) this measures, per size,
in a fresh child process so memory figures are its own:

- build: ``Matcher.from_path`` time and resident memory (peak delta and kept);
- latency of ``Matcher.match``: p50 / p99 over a realistic query mix (mostly innocent
  queries from common words in six languages, some plain matches, some obfuscated);
- recall on an obfuscated query set (one query per evasion class of §4, round-robin);
- the cost of waiting between queries: the mix's first 2,000 queries back to back,
  then each after 1 ms of sleep, as a server meets them;
- huge pages: the mix at first sight again on small pages, and at the same time in a
  fork whose heap went on huge pages (:mod:`deterrence.hugepages`), as the servers run;
- in the same process, the same measurements for two baselines: a hand-written regex
  alternation over the lower-cased query, and brute-force rapidfuzz (every query word
  and 2-3 word n-gram against every term, OSA distance with the §4 allowance).
  Baselines are bounded by a time budget per measurement; the number of queries each
  actually ran is printed beside its figures.

Everything is invented and seeded (see :mod:`deterrence.evaluation`). Absolute times on
a shared machine are noise; the ratios measured in one run are the figures to compare.

    python -m bench.matcher [--quick] [--sizes 1000,10000,100000] [--queries 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SEED = 20261122
PACED_QUERIES = 2_000
PACE_SECONDS = 0.001
"""A pause before each query of the paced pass: on this project's shared 2-core
machines a process that waits this long between matches runs each of them 2-3
times slower (bench.soak's servers show the same)."""


# -- the parent: lists and queries ---------------------------------------------------


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def write_list(
    path: Path, terms: Sequence[Any], *, list_id: str = "bench", version: int | None = None
) -> None:
    """A list file of invented terms (``InventedTerm``s, or plain strings)."""
    write_list_lines(path, [term_line(term) for term in terms], list_id=list_id, version=version)


def write_list_lines(
    path: Path, lines: Sequence[str], *, list_id: str, version: int | None = None
) -> None:
    """A list file of terms formatted by ``term_line`` already."""
    head = [f'id = "{list_id}"', f'category = "{list_id}"', "terms = ["]
    if version is not None:
        head.insert(2, f'version = "{version}"')
    path.write_text("\n".join([*head, *lines, "]"]) + "\n", encoding="utf-8")


def term_line(term: Any) -> str:
    """One term's line in a list file's ``terms``."""
    if isinstance(term, str):
        return f"  {_toml_string(term)},"
    options = []
    if not term.fuzzy:
        options.append("fuzzy = false")
    if term.substring:
        options.append("substring = true")
    text = _toml_string(term.text)
    return f"  {{ term = {text}, {', '.join(options)} }}," if options else f"  {text},"


def make_workload(
    size: int, queries: int, recall_per_class: int, vocabulary: Any
) -> dict[str, Any]:
    """The list and the queries for one size (all seeded)."""
    from deterrence import evaluation as ev

    rng = random.Random(f"{SEED}:bench:{size}")
    forge = ev.WordForge(rng, vocabulary, spread=False)
    pool = [forge.latin(3, 10) for _ in range(max(200, size // 3))]
    terms = ev.invented_terms(
        forge, size, pool=pool, cyrillic_share=0.03, cjk_share=0.02, substring_share=0.03
    )
    latin = [t for t in terms if t.script == "latin"]

    def obfuscate(name: str) -> tuple[str, str] | None:
        term = rng.choice(latin)
        if name == "pairs":
            pairs = [p for p in ev.PAIRS if p[0].eligible(term) and p[1].eligible(term)]
            query = ev.perturb_pair(rng, term, rng.choice(pairs)) if pairs else None
        elif name == "embedded":
            query = ev.embed(rng, term.text, vocabulary.latin_fillers)
        else:
            perturbation = ev.PERTURBATION_BY_NAME[name]
            query = perturbation.apply(rng, term.text) if perturbation.eligible(term) else None
        return None if query is None else (name, query)

    classes = ["embedded", *(p.name for p in ev.PERTURBATIONS), "pairs"]
    recall: list[tuple[str, str]] = []
    for _ in range(recall_per_class):  # round-robin, so any prefix is balanced
        for name in classes:
            for _ in range(50):
                found = obfuscate(name)
                if found is not None:
                    recall.append(found)
                    break

    mix: list[tuple[str, str]] = []
    languages = ev.QUERY_LANGUAGES
    for _ in range(queries):
        roll = rng.random()
        if roll < 0.85:
            lang = rng.choice(languages)
            mix.append(("innocent", ev.innocent_query(rng, vocabulary.query_words[lang], lang)))
        elif roll < 0.92:
            term = rng.choice(terms)
            fillers = vocabulary.han_fillers if term.script == "cjk" else vocabulary.latin_fillers
            joiner = "" if term.script == "cjk" else " "
            mix.append(("plain", ev.embed(rng, term.text, fillers, joiner)))
        else:
            found = None
            while found is None:
                found = obfuscate(rng.choice(classes))
            mix.append(("obfuscated", found[1]))
    return {"terms": terms, "recall": recall, "mix": mix}


# -- the child: one size, measured in its own process --------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Start VmHWM afresh (Linux >= 4.0). ru_maxrss would not do: it survives exec,
    so a child would report the parent's peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


class _TooSlow(Exception):
    pass


def _raise_too_slow(signum: int, frame: object) -> None:
    raise _TooSlow


def load_within(path: Path, seconds: int) -> tuple[Any, float | None]:
    """``load_lists`` if it finishes within ``seconds``; otherwise the same
    TermList built straight from the parsed TOML (and None for the load time)."""
    import tomllib

    from deterrence.lists import Term, TermList, load_lists

    previous = signal.signal(signal.SIGALRM, _raise_too_slow)
    signal.alarm(seconds)
    started = time.perf_counter()
    try:
        return load_lists([path]), time.perf_counter() - started
    except _TooSlow:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        terms = tuple(
            Term(t, True)
            if isinstance(t, str)
            else Term(t["term"], t.get("fuzzy", True), t.get("substring", False))
            for t in data["terms"]
        )
        return (TermList(id=data["id"], category=data["category"], terms=terms),), None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {"n": 0}
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {
        "n": len(ordered),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "mean": statistics.fmean(ordered) / 1000,
    }


def _timed(
    match: Callable[[str], object],
    queries: Sequence[tuple[str, str]],
    budget: float,
    pause: float = 0.0,
) -> tuple[list[int], list[bool], list[str]]:
    """Latency (ns) and outcome of each query, stopping when the budget is
    spent; ``pause`` seconds of sleep before each."""
    samples: list[int] = []
    outcomes: list[bool] = []
    kinds: list[str] = []
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + budget
    for kind, query in queries:
        if pause:
            time.sleep(pause)
        start = clock()
        found = match(query)
        samples.append(clock() - start)
        outcomes.append(bool(found))
        kinds.append(kind)
        if time.perf_counter() > deadline:
            break
    return samples, outcomes, kinds


def _summary(
    match: Callable[[str], object],
    mix: Sequence[tuple[str, str]],
    recall: Sequence[tuple[str, str]],
    budget: float,
) -> dict[str, Any]:
    samples, outcomes, kinds = _timed(match, mix, budget)
    innocent = [hit for hit, kind in zip(outcomes, kinds, strict=True) if kind == "innocent"]
    _, found, classes = _timed(match, recall, budget)
    by_class: dict[str, list[int]] = {}
    for hit, name in zip(found, classes, strict=True):
        counts = by_class.setdefault(name, [0, 0])
        counts[0] += hit
        counts[1] += 1
    return {
        "latency": _percentiles(samples),
        "by_kind": {
            kind: _percentiles([s for s, k in zip(samples, kinds, strict=True) if k == kind])
            for kind in ("innocent", "plain", "obfuscated")
        },
        "innocent_matched": [sum(innocent), len(innocent)],
        "recall": [sum(found), len(found)],
        "recall_by_class": by_class,
    }


def _allowance(length: int) -> int:
    return 2 if length >= 9 else 1 if length >= 5 else 0


def brute_force(terms: Sequence[str]) -> Callable[[str], bool]:
    """Every query word and 2-3 word n-gram against every term (OSA, §4 allowance)."""
    from rapidfuzz import process
    from rapidfuzz.distance import OSA

    choices = [t.lower() for t in terms]

    def match(query: str) -> bool:
        words = query.lower().split()
        for n in (1, 2, 3):
            for i in range(len(words) - n + 1):
                gram = " ".join(words[i : i + n])
                cutoff = _allowance(len(gram))
                if process.extractOne(gram, choices, scorer=OSA.distance, score_cutoff=cutoff):
                    return True
        return False

    return match


def _set_memo(matcher: Any, size: int) -> None:
    """Give ``matcher`` fresh memos of ``size`` (0: none) — a bench-only reach
    into the matcher, so that one build serves all three passes."""
    from deterrence.memo import Memo

    matcher._query_memo = Memo(size)
    matcher._word_memo = Memo(size)


def child(workdir: Path, budget: float, load_limit: int) -> dict[str, Any]:
    from deterrence.matcher import Matcher
    from deterrence.memo import DEFAULT_SIZE

    data = json.loads((workdir / "queries.json").read_text(encoding="utf-8"))
    mix = [tuple(q) for q in data["mix"]]
    recall = [tuple(q) for q in data["recall"]]
    terms: list[str] = data["terms"]
    gc.collect()
    _reset_peak()
    rss_before = _status_kib("VmRSS")
    started = time.perf_counter()
    lists, load_seconds = load_within(workdir / "list.toml", load_limit)
    indexed = time.perf_counter()
    matcher = Matcher(lists)
    finished = time.perf_counter()
    result: dict[str, Any] = {
        "terms": matcher.term_count,
        "load_seconds": load_seconds,
        "load_limit": load_limit,
        "index_seconds": finished - indexed,
        "build_seconds": finished - started,
        "rss_peak_delta_mib": (_status_kib("VmHWM") - rss_before) / 1024,
        "rss_kept_mib": (_status_kib("VmRSS") - rss_before) / 1024,
    }
    # Three passes over the same mix (deterrence.memo): with the memo off, every
    # query and word is worked out anew; at first sight each query is new to the
    # memo but its words may not be; repeated, every answer comes from the memo.
    _set_memo(matcher, 0)
    for _, query in mix[:300]:  # warm the CPU caches the way a running server has them
        matcher.match(query)
    result["memo_off"] = _summary(matcher.match, mix, recall, budget=float("inf"))
    _set_memo(matcher, DEFAULT_SIZE)
    result["deterrence"] = _summary(matcher.match, mix, recall, budget=float("inf"))
    result["repeated"] = {"latency": _percentiles(_timed(matcher.match, mix, float("inf"))[0])}
    # The same first sights, back to back and then each after a pause, as a
    # server meets them between requests (its idle loop, the network).
    for name, pause in (("back_to_back", 0.0), ("paced", PACE_SECONDS)):
        _set_memo(matcher, DEFAULT_SIZE)
        samples = _timed(matcher.match, mix[:PACED_QUERIES], float("inf"), pause)[0]
        result[name] = {"latency": _percentiles(samples)}

    started = time.perf_counter()
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\b", re.I)
    regex_build = time.perf_counter() - started
    result["regex"] = _summary(lambda q: pattern.search(q.lower()), mix, recall, budget)
    result["regex"]["build_seconds"] = regex_build
    result["rapidfuzz"] = _summary(brute_force(terms), mix, recall, budget)
    result.update(_huge_pages_pair(matcher, mix))
    return result


def _huge_pages_pair(matcher: Any, mix: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The servers put the heap on huge pages (deterrence.hugepages). The same
    first sights run at the same time in this process, on small pages, and in a
    fork of it that collapsed its heap into huge pages, one on each core: a slow
    spell of the machine then falls on both, which one pass after the other
    does not ensure (the ratio moved from ×0.74 to ×1.05 that way)."""
    from deterrence.hugepages import back_heap_with_huge_pages
    from deterrence.memo import DEFAULT_SIZE

    ready_read, ready_write = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: collapse, say so, then measure; never return from here
        try:
            os.close(ready_read)
            os.close(answer_read)
            started = time.perf_counter()
            collapsed = back_heap_with_huge_pages()
            seconds = time.perf_counter() - started
            os.write(ready_write, b"x")
            _set_memo(matcher, DEFAULT_SIZE)
            samples = _timed(matcher.match, mix, float("inf"))[0]
            answer = {
                "latency": _percentiles(samples),
                "mib": collapsed / 2**20,
                "seconds": seconds,
            }
            with os.fdopen(answer_write, "w") as out:
                json.dump(answer, out)
        finally:
            os._exit(0)
    # Only the fork holds the write ends now: if it dies, the reads below end
    # (and json.load fails) instead of waiting for ever.
    os.close(ready_write)
    os.close(answer_write)
    os.read(ready_read, 1)
    os.close(ready_read)
    _set_memo(matcher, DEFAULT_SIZE)
    small = {"latency": _percentiles(_timed(matcher.match, mix, float("inf"))[0])}
    with os.fdopen(answer_read) as answers:
        huge = json.load(answers)
    os.waitpid(pid, 0)
    return {
        "small_pages": small,
        "huge_pages": {"latency": huge["latency"]},
        "huge_pages_mib": huge["mib"],
        "huge_pages_seconds": huge["seconds"],
    }


# -- the report ------------------------------------------------------------------------


def _fmt_us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _load(result: dict[str, Any]) -> str:
    seconds = result["load_seconds"]
    return f"{seconds:.2f}" if seconds is not None else f">{result['load_limit']}*"


def _pct(pair: Sequence[int], digits: int = 1) -> str:
    hits, total = pair
    return f"{hits / total:.{digits}%} ({hits}/{total})" if total else "-"


def _two_passes(
    results: dict[int, dict[str, Any]],
    before: str,
    after: str,
    labels: tuple[str, str],
    digits: int,
    extra: tuple[str, Callable[[dict[str, Any]], str]] | None = None,
) -> list[str]:
    """A table of two passes over the same queries per size: p50 / p99 of each,
    the ratio after / before, and an ``extra`` column."""
    header = f"{'terms':>8} {labels[0]:>17} {labels[1]:>17} {'ratio':>13}"
    rows = [header + (f" {extra[0]:>18}" if extra else "")]
    for r in results.values():
        first, second = r[before]["latency"], r[after]["latency"]
        p50, p99 = second["p50"] / first["p50"], second["p99"] / first["p99"]
        ratio = f"×{p50:.{digits}f} / ×{p99:.{digits}f}"
        cells = [_fmt_us(x["p50"]) + " / " + _fmt_us(x["p99"]) for x in (first, second)]
        row = f"{r['terms']:>8,} {cells[0]:>17} {cells[1]:>17} {ratio:>13}"
        rows.append(row + (f" {extra[1](r):>18}" if extra else ""))
    return rows


def report(results: dict[int, dict[str, Any]], machine: dict[str, Any]) -> str:
    lines = [
        f"matcher benchmark: {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}, load average {machine['load']} at start",
        "one process per size; the query mix is 85 % innocent, 7 % plain matches, 8 % obfuscated",
        "",
        f"{'terms':>8} {'load s':>8} {'index s':>8} {'RSS peak Δ':>11} {'RSS kept':>9}"
        f" {'p50 µs':>8} {'p99 µs':>8} {'innocent p50/p99':>17} {'obfuscated p50/p99':>19}"
        f" {'queries':>8}",
    ]
    for r in results.values():
        d = r["deterrence"]
        inn, obf = d["by_kind"]["innocent"], d["by_kind"]["obfuscated"]
        lines.append(
            f"{r['terms']:>8,} {_load(r):>8} {r['index_seconds']:>8.2f}"
            f" {r['rss_peak_delta_mib']:>7.0f} MiB"
            f" {r['rss_kept_mib']:>5.0f} MiB {_fmt_us(d['latency']['p50']):>8}"
            f" {_fmt_us(d['latency']['p99']):>8}"
            f" {_fmt_us(inn.get('p50')) + ' / ' + _fmt_us(inn.get('p99')):>17}"
            f" {_fmt_us(obf.get('p50')) + ' / ' + _fmt_us(obf.get('p99')):>19}"
            f" {d['latency']['n']:>8,}"
        )
    lines += [
        "",
        "the memo (deterrence.memo), p50 / p99 µs over the same mix: off = every query and word"
        " worked out anew;",
        "first sight = each query new to the memo (its words may not be; the figures above);"
        " repeated = all from the memo",
        f"{'terms':>8} {'memo off':>17} {'first sight':>17} {'repeated':>17}",
    ]
    for r in results.values():
        cells = [
            _fmt_us(r[k]["latency"]["p50"]) + " / " + _fmt_us(r[k]["latency"]["p99"])
            for k in ("memo_off", "deterrence", "repeated")
        ]
        lines.append(f"{r['terms']:>8,} " + " ".join(f"{c:>17}" for c in cells))
    paced = next(iter(results.values()))["paced"]["latency"]["n"]
    lines += [
        "",
        f"paced: the first {paced:,} queries of the mix at first sight, back to back, then"
        f" each after {PACE_SECONDS * 1000:g} ms of sleep",
        "(as a server meets them, between requests); p50 / p99 µs and the paced / back-to-back"
        " ratio",
    ]
    lines += _two_passes(results, "back_to_back", "paced", ("back to back", "paced"), 1)
    lines += [
        "",
        "huge pages (deterrence.hugepages, as the servers run): the mix at first sight on small"
        " pages here and,",
        "at the same time on the other core, in a fork whose heap went on huge pages; p50 / p99"
        " µs, the huge / small ratio, and what it took",
    ]
    lines += _two_passes(
        results,
        "small_pages",
        "huge_pages",
        ("small pages", "huge pages"),
        2,
        ("collapsed", lambda r: f"{r['huge_pages_mib']:.0f} MiB, {r['huge_pages_seconds']:.2f} s"),
    )
    if any(r["load_seconds"] is None for r in results.values()):
        lines.append(
            "* load_lists did not finish within the limit (it looks up each term's line by"
            " scanning the file: quadratic); that size's index was built from the parsed TOML"
        )
    lines += [
        "",
        "against the baselines, same process, same queries (recall on obfuscated queries;",
        "'innocent hits' = innocent queries matched; n = queries run within the budget):",
        f"{'terms':>8} {'matcher':<12} {'p50 µs':>9} {'p99 µs':>9} {'n':>7}"
        f" {'recall':>22} {'innocent hits':>20}",
    ]
    for r in results.values():
        for name in ("deterrence", "regex", "rapidfuzz"):
            s = r[name]
            label = f"{r['terms']:,}" if name == "deterrence" else ""
            lines.append(
                f"{label:>8} {name:<12}"
                f" {_fmt_us(s['latency'].get('p50')):>9} {_fmt_us(s['latency'].get('p99')):>9}"
                f" {s['latency']['n']:>7,} {_pct(s['recall']):>22}"
                f" {_pct(s['innocent_matched'], 3):>20}"
            )
    lines += ["", "ratios measured in this run (baseline / deterrence; > 1 means deterrence wins):"]
    for r in results.values():
        d = r["deterrence"]
        parts = []
        for name in ("regex", "rapidfuzz"):
            b = r[name]
            if not b["latency"]["n"]:
                continue
            speed = b["latency"]["p50"] / d["latency"]["p50"]
            tail = b["latency"]["p99"] / d["latency"]["p99"]
            d_recall = d["recall"][0] / max(1, d["recall"][1])
            b_recall = b["recall"][0] / max(1, b["recall"][1])
            parts.append(
                f"{name}: p50 ×{speed:,.1f}, p99 ×{tail:,.1f}, "
                f"recall {d_recall:.1%} vs {b_recall:.1%}"
            )
        lines.append(f"{r['terms']:>8,}  " + "; ".join(parts))
    smallest = next(iter(results.values()))
    lines += [
        "",
        f"recall by evasion class at {smallest['terms']:,} terms (deterrence / regex / rapidfuzz):",
    ]
    classes = smallest["deterrence"]["recall_by_class"]
    for name, (hits, total) in classes.items():
        cells = [f"{hits}/{total}"]
        for baseline in ("regex", "rapidfuzz"):
            h, t = smallest[baseline]["recall_by_class"].get(name, (0, 0))
            cells.append(f"{h}/{t}" if t else "-")
        lines.append(f"  {name:<20} " + "   ".join(f"{c:>7}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matcher", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer queries, shorter budgets")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, help="queries in the latency mix")
    parser.add_argument("--budget", type=float, help="seconds per baseline measurement")
    parser.add_argument(
        "--load-limit",
        type=int,
        help="seconds load_lists may take before the bench builds the lists from TOML itself"
        " (default 60, --quick 10)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    budget = args.budget or (2.0 if args.quick else 8.0)
    args.load_limit = args.load_limit or (10 if args.quick else 60)
    if args.child:
        print(json.dumps(child(args.child, budget, args.load_limit)))
        return 0

    from deterrence import evaluation as ev

    queries = args.queries or (5_000 if args.quick else 20_000)
    recall_per_class = 10 if args.quick else 30
    sizes = [int(s) for s in args.sizes.split(",")]
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    started = time.perf_counter()
    vocabulary = ev.load_vocabulary()
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="deterrence-bench-") as tmp:
        for size in sizes:
            workdir = Path(tmp) / str(size)
            workdir.mkdir()
            made = time.perf_counter()
            workload = make_workload(size, queries, recall_per_class, vocabulary)
            write_list(workdir / "list.toml", workload["terms"])
            (workdir / "queries.json").write_text(
                json.dumps(
                    {
                        "terms": [t.text for t in workload["terms"]],
                        "mix": workload["mix"],
                        "recall": workload["recall"],
                    },
                    ensure_ascii=False,
                ),
                encoding="utf-8",
            )
            print(
                f"[{size:,} terms: workload made in {time.perf_counter() - made:.1f} s, measuring]",
                file=sys.stderr,
                flush=True,
            )
            command = [sys.executable, "-m", "bench.matcher", "--child", str(workdir)]
            command += ["--budget", str(budget), "--load-limit", str(args.load_limit)]
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, check=False, timeout=1800
            )
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            results[size] = json.loads(done.stdout)
    print(report(results, machine))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
