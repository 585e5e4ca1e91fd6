"""Soak: constant load while the term lists keep changing, on loopback.

Two targets, one after the other, each for ``--seconds``:

1. ``middleware``: the demo site (``deterrence demo``) with list polling on
   (``DETERRENCE_RELOAD_POLL_SECONDS=0.5``); every ``--reload-every`` seconds the soak
   list file is rewritten with one more invented term, and polling picks it up;
2. ``proxy``: ``deterrence proxy`` in front of bench.apps' small search site; every
   ``--reload-every`` seconds the list file is rewritten and
   ``POST /_deterrence/admin/reload`` is called.

The list is bench.matcher's workload at ``--terms`` (invented terms, Latin with some
Cyrillic and CJK), with the demo lists beside it. The load is wrk (``-c
--connections``) over that workload's ``--mix`` distinct queries — searches in six
languages, one in seven matching a term plain or obfuscated — so that nearly every
request is new to the matcher's memos, as in a site's long tail of searches. Each
connection waits between requests so that the load is about ``--rate`` a second
(``--rate 0``: back to back, saturating the machine); without wrk, a Python client
sends the probe's queries. Beside it a probe client (bench/probe.py) sends
``--probe-rate`` requests a second over keep-alive connections, each at random times,
drawn from the same long tail with answers checked beforehand, and records each one's
time, latency (to the kernel's receive timestamp of the answer) and answer — was an
innocent search passed and a matching one blocked, and is the newest term blocked
yet — so latency right after reloads can be told from latency elsewhere. Together
they make about 1,000 requests a second. ``/metrics`` is read every half second, so
the matcher's own histogram can be split the same way. The server runs under
bench.gc_trace, which logs how long each of its cycle collections took: one holds
the interpreter lock throughout, and a reload's new objects make some longer.

Reported per target: requests and errors (socket errors, non-2xx, wrong answers: all
must be 0), reloads counted ok/error, the time from a rewrite until the new term is
blocked, RSS of the server(s) at start, after the first reload, half-way and at the
end, p50/p99 latency overall (wrk) and of the probe inside the ``--window`` seconds
after each rewrite versus outside, the server's collections of 1 ms or more per
minute, inside and outside, and the p99 of ``deterrence_match_duration_seconds``
over the whole run. Last, the reload spike tests against DESIGN §7's p99 target
(bench/spike.py): the p99 a reload adds to requests, and the share of matches over
250 µs after reloads, each with a 95 % interval from resampling whole reload cycles.

    python -m bench.soak [--seconds 60] [--reload-every 5] [--terms 5000]
                         [--connections 16] [--rate 800] [--probe-rate 200]
                         [--window 2] [--save FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import quote_plus

from bench import gc_trace
from bench.matcher import make_workload, term_line, write_list_lines
from bench.middleware import free_port
from bench.probe import Probe, Query, Sample, run_probe
from bench.proxy import started
from bench.spike import (
    P99_TARGET,
    Buckets,
    Interval,
    LatencyCycle,
    MatchCycle,
    by_phase,
    latency_cycles,
    match_cycles,
    match_spike,
    over_target,
    percentile,
    pooled,
    request_spike,
    since_rewrite,
)
from deterrence.metrics import MATCH_DURATION

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "soak-admin-token"
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def invented_term(rng: random.Random) -> str:
    """A made-up word for a rewrite to add: four random syllables and a closing x, q or z."""
    return "".join(rng.choice(SYLLABLES) for _ in range(4)) + rng.choice("xqz")


def write_list(path: Path, lines: Sequence[str], version: int) -> None:
    """The soak list from its terms' lines (``term_line``), each formatted once: a
    rewrite should cost the machine what a deploy's copy does, not 6-30 ms of this
    process's CPU on a core the servers need right as their reload begins."""
    temporary = path.with_name(f".{path.name}.tmp")
    write_list_lines(temporary, lines, list_id="soak", version=version)
    temporary.replace(path)  # atomic, as a careful deploy does it


@dataclass(frozen=True)
class Workload:
    script: Path
    """wrk's Lua script: the load's queries."""
    queries: list[Query]
    """The probe's queries and their answers."""
    added: list[str]
    """The term each rewrite adds, in turn."""


PROBE_QUERIES = 2_000


# --- the probe --------------------------------------------------------------------------


def added_terms(rng: random.Random, count: int, queries: Sequence[Query]) -> list[str]:
    """The terms the rewrites add, one each: invented words that match none of the
    probe's queries, so that every query keeps the answer it was checked for."""
    from deterrence import Matcher

    texts = [text for text, _ in queries]
    terms: list[str] = []
    while len(terms) < count:
        term = invented_term(rng)
        single = Matcher.from_terms([term])
        if not any(single.match(text) for text in texts):
            terms.append(term)
    return terms


def probe_queries(queries: Sequence[str], lists: Sequence[Path], count: int) -> list[Query]:
    """``count`` of the load's queries, each with the answer the lists give it: the
    probe asks what a site's long tail asks, new to the server's memos inside a
    reload's window and outside it alike. (A few fixed searches, answered from the
    memo at other times and matched afresh after each reload, made every reload
    look slower than it was.)"""
    from deterrence import Matcher

    matcher = Matcher.from_path(lists)
    chosen = random.Random(7).sample(list(queries), count)
    answers = [matcher.match(text) for text in chosen]
    return [
        (text, answer is not None and answer.action == "block")
        for text, answer in zip(chosen, answers, strict=True)
    ]


class ProbeProcess:
    """The probe, run in a process of its own (multiprocessing's spawn) that does
    nothing else: in this one, the rewrites, scrapes and bookkeeping stalled its
    event loop by up to 5 ms, mostly right after a rewrite, and every probe in
    flight counted the stall as the server's latency. It reports its own loop's
    stalls too, so that a reader can see the probe's clock was clean."""

    def __init__(
        self, port: int, seconds: float, rate: float, connections: int, queries: Sequence[Query]
    ) -> None:
        context = multiprocessing.get_context("spawn")
        news_out, self._news = context.Pipe(duplex=False)  # (receiving end, sending end)
        self._results, results_in = context.Pipe(duplex=False)
        until = time.monotonic() + seconds
        self._process = context.Process(
            target=_probe_main,
            args=(port, until, rate, connections, queries, news_out, results_in),
            daemon=True,
        )
        self._process.start()
        news_out.close()  # the child's ends: should it die, recv() raises instead of waiting
        results_in.close()

    def announce(self, newest: str) -> None:
        """The term just added to the list: the probe asks for it from now on."""
        self._news.send(newest)

    async def collect(self, probe: Probe) -> list[float]:
        """Wait for the end; fill ``probe`` in, and return the probe loop's stalls (s)."""
        samples, wrong, errors, blocked_at, stalls = await asyncio.to_thread(self._results.recv)
        await asyncio.to_thread(self._process.join)
        probe.samples = [Sample(*sample) for sample in samples]
        probe.wrong, probe.errors, probe.blocked_at = wrong, errors, blocked_at
        return list(stalls)

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


def _probe_main(
    port: int,
    until: float,
    rate: float,
    connections: int,
    queries: Sequence[Query],
    news: Connection,
    results: Connection,
) -> None:
    probe = Probe()
    run_probe(probe, port, until, rate, connections, queries, news)
    samples = [(s.at, s.seconds, s.ok) for s in probe.samples]
    results.send((samples, probe.wrong, probe.errors, probe.blocked_at, probe.stalls))


# --- one target ---------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    pids: dict[str, int]
    list_file: Path
    lines: list[str]
    """The list's terms, formatted (``term_line``); the rewrites add more."""
    admin: bool
    collections_log: Path
    """Where the server (not the proxy's site) logs its collections (bench.gc_trace)."""


@dataclass
class Report:
    name: str
    requests: int = 0
    rate: float = 0.0
    wrk_p50: str = "?"
    wrk_p99: str = "?"
    socket_errors: int = 0
    socket_error_kinds: str = ""
    """wrk's breakdown, when there were any: connect, read, write, timeout."""
    non_2xx: int = 0
    load_tool: str = "wrk"
    probe: Probe = field(default_factory=Probe)
    rewrites: list[float] = field(default_factory=list)
    reloads_ok: float = 0.0
    reloads_error: float = 0.0
    error_kinds: dict[str, float] = field(default_factory=dict)
    rss_start: dict[str, float] = field(default_factory=dict)
    rss_first_reload: dict[str, float] = field(default_factory=dict)
    rss_half: dict[str, float] = field(default_factory=dict)
    rss_end: dict[str, float] = field(default_factory=dict)
    matcher_p99: str = "?"
    matcher_scrapes: list[tuple[float, Buckets]] = field(default_factory=list)
    """(when, the match-duration histogram then), every SCRAPE_EVERY seconds."""
    probe_stalls: list[float] = field(default_factory=list)
    """How late the probe client sent, when over a millisecond (s): its own stalls."""
    period: tuple[float, float] = (0.0, 0.0)
    """When the load and the rewrites ran (time.monotonic())."""
    collections: list[gc_trace.Collection] = field(default_factory=list)
    """The server's cycle collections during the run."""

    def samples(self) -> list[tuple[float, float]]:
        """The probe's (sent at, latency) pairs."""
        return [(sample.at, sample.seconds) for sample in self.probe.samples]

    def raw(self) -> dict[str, object]:
        """What the spike tests read, for ``--save``."""
        return {
            "name": self.name,
            "samples": self.samples(),
            "rewrites": self.rewrites,
            "matcher_scrapes": self.matcher_scrapes,
            "period": self.period,
            "collections": self.collections,
        }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lua_mix(directory: Path, queries: Sequence[str], delay_ms: float) -> Path:
    """wrk's script: the queries in turn, each connection waiting ``delay_ms``
    after every answer (0: back to back)."""
    paths = ", ".join(f'"/search?q={quote_plus(q)}"' for q in queries)
    pacing = f"delay = function()\n  return {delay_ms:.3f}\nend\n" if delay_ms else ""
    script = directory / "soak.lua"
    script.write_text(
        f"local paths = {{{paths}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n' + pacing
    )
    return script


def run_wrk(report: Report, port: int, script: Path, seconds: int, connections: int) -> None:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    if found := re.search(r"(\d+) requests in", output):
        report.requests = int(found.group(1))
    if found := re.search(r"Requests/sec:\s+([\d.]+)", output):
        report.rate = float(found.group(1))
    if found := re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE):
        report.wrk_p50 = found.group(1)
    if found := re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE):
        report.wrk_p99 = found.group(1)
    if found := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        report.socket_errors = sum(int(n) for n in found.groups())
        if report.socket_errors:
            names = ("connect", "read", "write", "timeout")
            report.socket_error_kinds = (
                " ("
                + ", ".join(
                    f"{name} {count}" for name, count in zip(names, found.groups(), strict=True)
                )
                + ")"
            )
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        report.non_2xx = int(found.group(1))


SCRAPE_EVERY = 0.5


async def scraper(target: Target, report: Report, seconds: float) -> None:
    """Reads the match-duration histogram every SCRAPE_EVERY seconds, and the
    servers' memory half-way."""
    half_way, until = time.monotonic() + seconds / 2, time.monotonic() + seconds
    while time.monotonic() < until:
        if not report.rss_half and time.monotonic() >= half_way:
            report.rss_half = {n: rss_mb(pid) for n, pid in target.pids.items()}
        text = await asyncio.to_thread(scrape, target.port)
        buckets = histogram_buckets(text, MATCH_DURATION)
        report.matcher_scrapes.append((time.monotonic(), buckets))
        await asyncio.sleep(SCRAPE_EVERY)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def histogram_buckets(text: str, name: str) -> Buckets:
    return [
        (float(bound), float(count))
        for bound, count in re.findall(
            rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.MULTILINE
        )
    ]


def bucket_p99(buckets: Buckets) -> str:
    """The bucket bound that holds 99 % of the observations, how many there were,
    and the share within the target."""
    over, total = over_target(buckets)
    within = total - over
    for bound, count in buckets:
        if total and count >= 0.99 * total:
            bound_text = f"≤ {bound * 1e6:.0f} µs" if bound < 1 else f"≤ {bound:g} s"
            return (
                f"{bound_text} (n={total:,.0f}, {within / total:.2%} ≤ {P99_TARGET * 1e6:.0f} µs)"
            )
    return "—"


def admin_reload(port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_deterrence/admin/reload",
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


async def rewriter(
    target: Target,
    report: Report,
    prober: ProbeProcess,
    seconds: float,
    every: float,
    terms: Iterator[str],
) -> None:
    lines = list(target.lines)
    version = 1
    deadline = time.monotonic() + seconds - every / 2
    while True:
        await asyncio.sleep(every)
        if time.monotonic() > deadline:
            return
        version += 1
        newest = next(terms)
        lines.append(term_line(newest))
        await asyncio.to_thread(write_list, target.list_file, lines, version)
        report.rewrites.append(time.monotonic())
        report.probe.written_at[newest] = time.monotonic()
        prober.announce(newest)
        if target.admin:
            await asyncio.to_thread(admin_reload, target.port)
        if len(report.rewrites) == 1:
            await asyncio.sleep(min(2.0, every / 2))  # the first reload done
            report.rss_first_reload = {n: rss_mb(pid) for n, pid in target.pids.items()}


async def python_load(
    report: Report, port: int, args: argparse.Namespace, queries: Sequence[Query]
) -> None:
    """The load without wrk: keep-alive connections sending the probe's queries,
    paced at ``args.rate`` in all (0: back to back)."""
    load = Probe()
    until = time.monotonic() + args.seconds
    await asyncio.to_thread(run_probe, load, port, until, args.rate, args.connections, queries)
    report.load_tool = "python client"
    report.requests = len(load.samples)
    report.rate = len(load.samples) / args.seconds
    latencies = sorted(s.seconds for s in load.samples)
    report.wrk_p50 = f"{percentile(latencies, 50) * 1e3:.2f}ms"
    report.wrk_p99 = f"{percentile(latencies, 99) * 1e3:.2f}ms"
    report.socket_errors = len(load.errors)
    report.non_2xx = len(load.wrong)


async def _measure(
    target: Target,
    report: Report,
    prober: ProbeProcess,
    args: argparse.Namespace,
    workload: Workload,
) -> None:
    """The load, the rewrites and the scrapes, while ``prober`` probes."""
    tasks = [
        rewriter(target, report, prober, args.seconds, args.reload_every, iter(workload.added)),
        scraper(target, report, args.seconds),
    ]
    if shutil.which("wrk"):
        tasks.append(
            asyncio.to_thread(
                run_wrk, report, target.port, workload.script, args.seconds, args.connections
            )
        )
    else:
        tasks.append(python_load(report, target.port, args, workload.queries))
    await asyncio.gather(*tasks)
    report.probe_stalls = await prober.collect(report.probe)


async def soak(target: Target, args: argparse.Namespace, workload: Workload) -> Report:
    report = Report(target.name)
    # Warm up, then measure memory from here.
    warm_until = time.monotonic() + 2.0
    await asyncio.to_thread(run_probe, Probe(), target.port, warm_until, 100, 4, workload.queries)
    report.rss_start = {name: rss_mb(pid) for name, pid in target.pids.items()}
    connections = max(4, round(args.probe_rate / 25))  # each one mostly idle, as a visitor
    prober = ProbeProcess(target.port, args.seconds, args.probe_rate, connections, workload.queries)
    started = time.monotonic()
    try:
        await _measure(target, report, prober, args, workload)
    finally:
        prober.close()
    report.period = (started, time.monotonic())
    report.collections = [
        c for c in gc_trace.read(target.collections_log) if started <= c[0] <= report.period[1]
    ]
    await asyncio.sleep(1.5)  # let the last reload finish before counting
    report.rss_end = {name: rss_mb(pid) for name, pid in target.pids.items()}
    metrics = await asyncio.to_thread(scrape, target.port)
    report.reloads_ok = sample(metrics, 'deterrence_list_reloads_total{result="ok"}')
    report.reloads_error = sample(metrics, 'deterrence_list_reloads_total{result="error"}')
    for kind in re.findall(r'^deterrence_errors_total\{kind="([^"]+)"\} [1-9]', metrics, re.M):
        report.error_kinds[kind] = sample(metrics, f'deterrence_errors_total{{kind="{kind}"}}')
    report.matcher_p99 = bucket_p99(histogram_buckets(metrics, MATCH_DURATION))
    return report


@contextlib.contextmanager
def middleware_target(tmp: Path, list_file: Path, lines: list[str]) -> Iterator[Target]:
    port = free_port()
    env = {
        "DETERRENCE_DATA_DIR": str(tmp / "demo-data"),
        "DETERRENCE_RELOAD_POLL_SECONDS": "0.5",
        "DETERRENCE_LISTS": f'["{REPO / "keyword_lists"}", "{list_file}"]',
    }
    log = tmp / "demo-collections.log"
    command = [sys.executable, "-m", "bench.gc_trace", str(log), "deterrence", "demo"]
    command += ["--port", str(port), "--no-access-log"]
    with started(command, port, env) as pid:
        pids = {"demo": pid}
        yield Target("middleware (demo, polling)", port, pids, list_file, lines, False, log)


@contextlib.contextmanager
def proxy_target(tmp: Path, list_file: Path, lines: list[str]) -> Iterator[Target]:
    site_port, port = free_port(), free_port()
    site = [sys.executable, "-m", "uvicorn", "bench.apps:app", "--port", str(site_port)]
    site += ["--no-access-log", "--log-level", "warning"]
    env = {
        "DETERRENCE_DATA_DIR": str(tmp / "proxy-data"),
        "DETERRENCE_ADMIN_TOKEN": ADMIN_TOKEN,
        "DETERRENCE_LISTS": f'["{REPO / "keyword_lists"}", "{list_file}"]',
    }
    log = tmp / "proxy-collections.log"
    command = [sys.executable, "-m", "bench.gc_trace", str(log), "deterrence", "proxy"]
    command += ["--port", str(port), "--upstream", f"http://127.0.0.1:{site_port}"]
    command += ["--no-access-log"]
    with (
        started(site, site_port, {"BENCH_MIDDLEWARE": "0", "BENCH_APP": "json"}) as site_pid,
        started(command, port, env) as pid,
    ):
        pids = {"proxy": pid, "site": site_pid}
        yield Target("proxy (admin endpoint)", port, pids, list_file, lines, True, log)


# --- reporting ----------------------------------------------------------------------------


def describe(values: list[float]) -> str:
    """p50 / p99 / max of latencies in seconds, in milliseconds."""
    if not values:
        return "—"
    return (
        f"{percentile(values, 50) * 1e3:.2f} / {percentile(values, 99) * 1e3:.2f}"
        f" / {max(values) * 1e3:.2f} ms (n={len(values)})"
    )


def slower_share(cycles: list[LatencyCycle], bound: float) -> float:
    """The share of requests inside the windows slower than ``bound`` (the others' p99)."""
    inside = pooled(cycles, inside=True)
    return sum(v > bound for v in inside) / len(inside) if inside else float("nan")


SPANS = (0.05, 0.5)
"""Where a reload's slow requests fall: the first 50 ms (the warm process's parse),
the rest of the first half second (the server's share, and a build when lists lost or
changed terms), then the rest of the window."""


def slower_by_span(
    samples: Sequence[tuple[float, float]], rewrites: Sequence[float], window: float, bound: float
) -> list[tuple[int, int]]:
    """(slower than ``bound``, all) among the requests sent 0-50 ms, 50-500 ms and
    0.5 s to ``window`` after a rewrite."""
    return [
        (sum(seconds > bound for seconds in phase), len(phase))
        for phase in by_phase(samples, rewrites, [*SPANS, window])
    ]


def collections_by_window(
    collections: Sequence[gc_trace.Collection],
    rewrites: Sequence[float],
    period: tuple[float, float],
    window: float,
    at_least: float = 1e-3,
) -> tuple[float, float]:
    """Collections that took ``at_least`` seconds or more, per minute: those that
    ended within ``window`` seconds after a rewrite, and at other times."""
    start, end = period
    inside_seconds = sum(
        max(0.0, min(at + window, following, end) - at)
        for at, following in zip(rewrites, [*rewrites[1:], end], strict=True)
    )
    outside_seconds = (end - start) - inside_seconds
    inside = outside = 0
    for ended, _, seconds in collections:
        if seconds < at_least:
            continue
        cycle, since = since_rewrite(ended, rewrites)
        if cycle and since <= window:
            inside += 1
        else:
            outside += 1
    return (
        60 * inside / inside_seconds if inside_seconds > 0 else float("nan"),
        60 * outside / outside_seconds if outside_seconds > 0 else float("nan"),
    )


def collections_text(report: Report, window: float) -> str:
    if not report.collections:
        return "—"
    inside, outside = collections_by_window(
        report.collections, report.rewrites, report.period, window
    )
    longest = max(seconds for _, _, seconds in report.collections)
    return f"{inside:.1f} / {outside:.1f} (longest {longest * 1e3:.1f} ms)"


def request_spike_text(interval: Interval, verdict: str) -> str:
    if verdict == "—":
        return verdict
    ms = [f"{v * 1e3:+.2f}" for v in (interval.estimate, interval.low, interval.high)]
    return f"{ms[0]} ms [{ms[1]}, {ms[2]}]: {verdict}"


def match_spike_text(
    interval: Interval, outside: float, verdict: str, cycles: list[MatchCycle]
) -> str:
    counts = f"n={sum(c[1] for c in cycles):,.0f} / {sum(c[3] for c in cycles):,.0f}"
    return (
        f"{interval.estimate:.2%} [{interval.low:.2%}, {interval.high:.2%}] / {outside:.2%}"
        f" ({counts}): {verdict if verdict != '—' else '— (over the target at other times too)'}"
    )


def print_report(reports: list[Report], args: argparse.Namespace) -> None:
    print()
    print(
        f"Soak: {args.seconds} s per target, list of {args.terms} invented terms + the demo"
        f" lists, rewritten every {args.reload_every} s; load {reports[0].load_tool}"
        f" -c{args.connections}; probe {args.probe_rate} req/s; window {args.window} s"
    )
    print()
    print("| | " + " | ".join(r.name for r in reports) + " |")
    print("| --- |" + " ---: |" * len(reports))

    def row(label: str, values: list[str]) -> None:
        print(f"| {label} | " + " | ".join(values) + " |")

    row("requests (load)", [f"{r.requests:,} ({r.rate:,.0f}/s)" for r in reports])
    row(
        "socket errors / non-2xx",
        [f"{r.socket_errors}{r.socket_error_kinds} / {r.non_2xx}" for r in reports],
    )
    row(
        "probe requests / errors / wrong answers",
        [
            f"{len(r.probe.samples):,} / {len(r.probe.errors)} / {len(r.probe.wrong)}"
            for r in reports
        ],
    )
    row(
        "list rewrites / reloads ok / error",
        [f"{len(r.rewrites)} / {r.reloads_ok:.0f} / {r.reloads_error:.0f}" for r in reports],
    )
    row(
        "rewrite → new term blocked (median / max)",
        [
            f"{statistics.median(r.probe.took_effect()):.2f} / {max(r.probe.took_effect()):.2f} s"
            if r.probe.took_effect()
            else "—"
            for r in reports
        ],
    )
    row(
        "deterrence_errors_total",
        [", ".join(f"{k}={v:.0f}" for k, v in r.error_kinds.items()) or "0" for r in reports],
    )
    row(
        "RSS start → after the 1st reload → half-way → end",
        [
            ", ".join(
                f"{n} {r.rss_start[n]:.1f} → {r.rss_first_reload.get(n, float('nan')):.1f}"
                f" → {r.rss_half.get(n, float('nan')):.1f}"
                f" → {r.rss_end[n]:.1f} MB"
                for n in r.rss_start
            )
            for r in reports
        ],
    )
    row("load latency p50 / p99", [f"{r.wrk_p50} / {r.wrk_p99}" for r in reports])
    cycles = [latency_cycles(r.samples(), r.rewrites, args.window) for r in reports]
    other_p99s = [percentile(pooled(c, inside=False), 99) for c in cycles]
    half_seconds = [0.5 * (i + 1) for i in range(math.ceil(args.window / 0.5))]
    row(
        f"probe p50 / p99 / max, ≤ {args.window:g} s after a rewrite",
        [describe(pooled(c, inside=True)) for c in cycles],
    )
    row(
        "probe p50 / p99 / max, other times",
        [describe(pooled(c, inside=False)) for c in cycles],
    )
    row(
        "probe client's own stalls over 1 ms (count / longest)",
        [f"{len(r.probe_stalls)} / {max(r.probe_stalls, default=0) * 1e3:.1f} ms" for r in reports],
    )
    row(
        "probe p99 by half second after a rewrite (0-0.5 s / 0.5-1 s / …); other times",
        [
            " / ".join(
                f"{percentile(phase, 99) * 1e3:.1f}"
                for phase in by_phase(r.samples(), r.rewrites, half_seconds)
            )
            + f"; {other_p99 * 1e3:.1f} ms"
            for r, other_p99 in zip(reports, other_p99s, strict=True)
        ],
    )
    row(
        f"probes ≤ {args.window:g} s after a rewrite slower than the other times' p99"
        " (1 % if reloads change nothing)",
        [f"{slower_share(c, p99):.2%}" for c, p99 in zip(cycles, other_p99s, strict=True)],
    )
    row(
        f"the same, 0-50 ms / 50-500 ms / 0.5-{args.window:g} s after a rewrite",
        [
            " / ".join(
                f"{slower / total:.1%}" if total else "–"
                for slower, total in slower_by_span(r.samples(), r.rewrites, args.window, other_p99)
            )
            for r, other_p99 in zip(reports, other_p99s, strict=True)
        ],
    )
    row(
        f"**reload spike, requests**: p99 ≤ {args.window:g} s after a rewrite minus other"
        f" times' (95 % interval; bound {P99_TARGET * 1e3:g} ms)",
        [request_spike_text(*request_spike(c)) for c in cycles],
    )
    row(
        f"the server's cycle collections of 1 ms or more, per minute: ≤ {args.window:g} s"
        " after a rewrite / other times",
        [collections_text(r, args.window) for r in reports],
    )
    row("matcher p99 (histogram bucket), whole run", [r.matcher_p99 for r in reports])
    matches = [match_cycles(r.matcher_scrapes, r.rewrites, args.window) for r in reports]
    row(
        f"**reload spike, matches**: share over {P99_TARGET * 1e6:.0f} µs ≤ {args.window:g} s"
        " after a rewrite (95 % interval) / other times (bound 1 %)",
        [match_spike_text(*match_spike(m), m) for m in matches],
    )
    for r in reports:
        for line in (r.probe.wrong + r.probe.errors)[:5]:
            print(f"  {r.name}: {line}")


def failed(reports: list[Report]) -> bool:
    return any(
        r.socket_errors
        or r.non_2xx
        or r.probe.errors
        or r.probe.wrong
        or r.reloads_error
        or set(r.error_kinds) - {"query_too_long"}
        for r in reports
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--reload-every", type=float, default=5.0)
    parser.add_argument("--terms", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--rate",
        type=float,
        default=800.0,
        help="load requests a second, about (each connection waits between requests);"
        " 0: back to back, saturating the machine",
    )
    parser.add_argument("--mix", type=int, default=30_000, help="distinct queries in the load")
    parser.add_argument("--probe-rate", type=float, default=200.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--target", choices=("middleware", "proxy", "both"), default="both")
    parser.add_argument(
        "--save",
        type=Path,
        help="write what the spike tests read to this JSON file (python -m bench.spike reads it)",
    )
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    from deterrence import evaluation

    # The list and the load's queries are bench.matcher's workload at this size:
    # searches in six languages, one in seven matching a term (plain or obfuscated),
    # so that nearly every request is new to the matcher's memo.
    bench_workload = make_workload(args.terms, args.mix, 0, evaluation.load_vocabulary())
    queries = [query for _, query in bench_workload["mix"]]
    lines = [term_line(term) for term in bench_workload["terms"]]
    # The vocabulary is millions of objects: left to the cycle collector, its full
    # collections (30-290 ms) would stall this process's rewrites and scrapes.
    evaluation.load_vocabulary.cache_clear()
    gc.collect()
    gc.freeze()
    delay_ms = 1000 * args.connections / args.rate if args.rate else 0.0
    reports = []
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        reference = tmp / "soak.toml"
        write_list(reference, lines, 1)
        probe_pool = probe_queries(queries, [REPO / "keyword_lists", reference], PROBE_QUERIES)
        rewrites = int(args.seconds / args.reload_every) + 1
        workload = Workload(
            lua_mix(tmp, queries, delay_ms),
            probe_pool,
            added_terms(random.Random(5), rewrites, probe_pool),
        )
        targets = ("middleware", "proxy") if args.target == "both" else (args.target,)
        for name in targets:
            list_file = tmp / f"{name}-lists" / "soak.toml"
            list_file.parent.mkdir()
            write_list(list_file, lines, 1)
            context = middleware_target if name == "middleware" else proxy_target
            with context(tmp, list_file, lines) as target:
                reports.append(asyncio.run(soak(target, args, workload)))
    print_report(reports, args)
    if args.save:
        saved = {"window": args.window, "targets": [r.raw() for r in reports]}
        args.save.write_text(json.dumps(saved))
    return 1 if failed(reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
