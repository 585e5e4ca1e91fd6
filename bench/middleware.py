"""Middleware overhead: throughput of the bare app against the same app behind
DeterrenceMiddleware, on non-matching search queries (DESIGN §7: ratio ≥ 0.90).

Both run under uvicorn (one worker, no access log), side by side on one core, and
wrk on the other core loads them with the same query mix, alternating between
them in short windows (ABBA order), so that other load on a shared machine falls
on both alike. Prints each window, the median of the per-round ratios and the
ratio over all requests, and the server CPU time per request.

Two query mixes, since deterrence remembers recent answers (deterrence.memo):

- ``head``: a cycle of 17 popular searches, every one answered from the
  middleware's memo of query strings after its first sight — the way a site's
  most frequent queries are;
- ``tail``: 5,000 different innocent queries of common words in six languages
  (deterrence.evaluation). The memo holds them all after the first cycle, so this
  measures how the middleware's work grows with a large, varied working set;
  ``bench.matcher`` measures first-sight matching (memo off) on its own.

    python -m bench.middleware [--seconds 2] [--rounds 15] [--connections 32]
                               [--app demo|json|both] [--mix head|tail|both]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = [
    "dickens", "science fiction", "sea adventure", "jane austen novels", "russian history",
    "poetry america", "detective stories london", "gothic horror", "philosophy stoicism",
    "children's literature fantasy", "french revolution", "whaling ship", "time travel",
    "political philosophy", "natural selection evolution", "moors revenge", "pirates treasure",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail_queries(count: int = 5_000, seed: int = 20261201) -> list[str]:
    """Different innocent queries of common words in six languages."""
    import random

    from deterrence import evaluation as ev

    vocabulary = ev.load_vocabulary()
    rng = random.Random(seed)
    queries: dict[str, None] = {}
    while len(queries) < count:
        lang = rng.choice(ev.QUERY_LANGUAGES)
        queries[ev.innocent_query(rng, vocabulary.query_words[lang], lang)] = None
    return list(queries)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and of its children's threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lua_script(
    directory: Path,
    queries: Sequence[str] = QUERIES,
    request: str = 'wrk.format("GET", paths[i])',
    name: str = "queries.lua",
) -> Path:
    """A wrk script that cycles through ``/search?q=`` for each query; ``request``
    is the Lua expression that makes a request of ``paths[i]``."""
    paths = ", ".join(f'"/search?q={urllib.parse.quote_plus(q)}"' for q in queries)
    script = directory / name
    script.write_text(
        f"local paths = {{{paths}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        f"  return {request}\nend\n"
    )
    return script


def pin(pid: int, core: int) -> None:
    """Keep a process on one core where there are two or more: the load generator
    then never takes the server's CPU, and the server keeps its caches."""
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {core})


def start_server(app: str, middleware: bool, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_MIDDLEWARE": "1" if middleware else "0", "BENCH_APP": app}
    env["BENCH_DATA_DIR"] = str(data_dir)
    command = [
        sys.executable, "-m", "uvicorn", "bench.apps:app", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO, env=env)
    pin(server.pid, 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("server did not start")


def run_wrk(port: int, script: Path, seconds: float, connections: int) -> tuple[float, str]:
    pinned = (os.cpu_count() or 1) >= 2
    output = subprocess.run(
        [
            "wrk", "-t1" if pinned else "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
            "-s", str(script), f"http://127.0.0.1:{port}/",
        ],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
        preexec_fn=(lambda: pin(0, 0)) if pinned else None,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE)
    if re.search(r"Non-2xx or 3xx responses", output):
        raise RuntimeError(f"errors during the run:\n{output}")
    return rate, p99.group(1) if p99 else "?"


def measure(
    app: str, seconds: int, rounds: int, connections: int, queries: Sequence[str], mix: str
) -> dict[str, object]:
    """Both servers run side by side on the same core; the load generator
    alternates between them in short windows, so that other load on a shared
    machine falls on both alike rather than on whichever ran during a busy spell."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench.middleware needs wrk (apt-get install wrk)")
    names = ("bare", "middleware")
    results: dict[str, list[float]] = {name: [] for name in names}
    latencies: dict[str, list[str]] = {name: [] for name in names}
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        script = lua_script(Path(tmp), queries)
        ports = {name: free_port() for name in names}
        servers = {
            name: start_server(app, name == "middleware", ports[name], Path(tmp) / "data")
            for name in names
        }
        try:
            for name in names:
                run_wrk(ports[name], script, 2, connections)  # warm-up
            for round_number in range(rounds):
                # ABBA order: neither always runs first.
                for name in names if round_number % 2 == 0 else names[::-1]:
                    pid = servers[name].pid
                    before = cpu_seconds(pid)
                    rate, p99 = run_wrk(ports[name], script, seconds, connections)
                    cpu = (cpu_seconds(pid) - before) / (rate * seconds) * 1e6
                    results[name].append(rate)
                    latencies[name].append(p99)
                    cpu_us[name].append(cpu)
                    print(
                        f"{app}/{mix} round {round_number + 1:2d} {name:>10}: {rate:9.0f} req/s"
                        f"  p99 {p99}  server CPU {cpu:5.0f} us/request"
                    )
        finally:
            for server in servers.values():
                server.terminate()
            for server in servers.values():
                server.wait(timeout=20)
    ratios = [m / b for b, m in zip(results["bare"], results["middleware"], strict=True)]
    ratio = statistics.median(ratios)
    total = sum(results["middleware"]) / sum(results["bare"])
    bare = statistics.median(results["bare"])
    added = (1 / statistics.median(results["middleware"]) - 1 / bare) * 1e6
    cpu_bare, cpu_middleware = (statistics.median(cpu_us[k]) for k in names)
    print(
        f"{app}/{mix}: median throughput ratio middleware/bare {ratio:.3f}"
        f" (all requests {total:.3f}; rounds {min(ratios):.3f}-{max(ratios):.3f};"
        f" target >= 0.90, goal 0.97); about {added:.0f} us added per request"
        f" at {bare:.0f} req/s bare"
    )
    # The server saturates its core, so its CPU time per request is what bounds its
    # rate; it moves less with other load on the machine than the rate does.
    print(
        f"{app}/{mix}: server CPU per request {cpu_bare:.0f} us bare,"
        f" {cpu_middleware:.0f} us with the middleware (+{cpu_middleware - cpu_bare:.0f} us);"
        f" ratio {cpu_bare / cpu_middleware:.3f}"
    )
    return {"ratio": ratio, "rounds": results, "p99": latencies, "cpu_us": cpu_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--app", choices=("demo", "json", "both"), default="both")
    parser.add_argument("--mix", choices=("head", "tail", "both"), default="both")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    mixes = {"head": QUERIES, "tail": tail_queries()} if args.mix == "both" else {}
    if not mixes:
        mixes[args.mix] = QUERIES if args.mix == "head" else tail_queries()
    for mix, queries in mixes.items():
        for app in ("demo", "json") if args.app == "both" else (args.app,):
            measure(app, args.seconds, args.rounds, args.connections, queries, mix)


if __name__ == "__main__":
    main()
