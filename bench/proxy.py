"""Proxy and decision-service overhead, in one run on loopback, loaded by wrk:

1. ``direct``        wrk -> the site (bench.apps, a small search app under uvicorn)
2. ``proxy``         wrk -> ``deterrence proxy`` -> the site
3. ``nginx+authz``   wrk -> nginx (deploy/nginx/deterrence.conf) -> the site, every
                     search checked by ``deterrence authz``
4. ``nginx``         the same nginx configuration without the auth_request lines

Every configuration gets the same innocent search mix (bench.middleware.QUERIES),
in alternating rounds so machine noise hits all alike. Prints throughput, p99
latency, the ratios of the proxy targets as the median of the rounds' own ratios
(proxy >= 0.50 of direct; nginx+authz >= 0.70 of nginx alone), the CPU time each
process spends per request (a figure that
other load on the machine disturbs far less than throughput), and the resident
memory of the proxy and the decision service before, half-way through and after a
soak of ``--soak`` seconds each, which follows ``--warm-up`` seconds of the same load
(reported apart: allocators grow over a server's first requests, then stay flat).

The site answers from memory in about 0.1-0.2 ms of CPU, far cheaper than a real
search backend, so the ratios are a worst case. ``--site-delay-ms`` makes each
search wait that long first, like a site waiting on its search index.

    python -m bench.proxy [--seconds 6] [--rounds 5] [--connections 32] [--soak 60]
                          [--warm-up 60] [--site-delay-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from bench.middleware import cpu_seconds, free_port, lua_script, run_wrk

REPO = Path(__file__).resolve().parent.parent
NGINX_CONF = REPO / "deploy" / "nginx" / "deterrence.conf"
CONFIGURATIONS = ("direct", "proxy", "nginx+authz", "nginx")


@dataclass
class Result:
    rates: list[float]
    p99: list[str]
    cpu_us: dict[str, list[float]]
    """CPU microseconds per request, by process."""


class DelayedSite:
    """bench.apps' search app, answering after BENCH_SITE_DELAY_MS (default 0)."""

    def __init__(self) -> None:
        from bench.apps import bare

        self.app: ASGIApp = bare
        self.delay = float(os.environ.get("BENCH_SITE_DELAY_MS", "0")) / 1000

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.delay and scope["type"] == "http":
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


def site() -> ASGIApp:
    """uvicorn factory for the site (``bench.proxy:site --factory``)."""
    return DelayedSite()


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def started(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``command`` until the block ends; yields its pid."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def nginx_config(tmp: Path, *, listen: int, site: int, authz: int, with_authz: bool) -> Path:
    conf = NGINX_CONF.read_text()
    if not with_authz:
        # nginx alone: the shipped file without the decision service.
        conf = "\n".join(
            line
            for line in conf.splitlines()
            if "auth_request" not in line and "$deterrence_" not in line
        )
    for old, new in {
        "listen 80;": f"listen 127.0.0.1:{listen};",
        "server 127.0.0.1:3000;": f"server 127.0.0.1:{site};",
        "server 127.0.0.1:8001;": f"server 127.0.0.1:{authz};",
        "/var/log/nginx/access.log": str(tmp / "search.log"),
    }.items():
        conf = conf.replace(old, new)
    prefix = tmp / ("nginx-authz" if with_authz else "nginx")
    prefix.mkdir(exist_ok=True)
    (prefix / "deterrence.conf").write_text(conf)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/deterrence.conf;
}}
"""
    )
    return main


def nginx_binary() -> str:
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("bench.proxy needs nginx (apt-get install nginx)")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, tmp: Path, connections: int, site_delay_ms: float) -> None:
        self.tmp = tmp
        self.connections = connections
        self.site_delay_ms = site_delay_ms
        self.script = lua_script(tmp)
        self.env = {
            "DETERRENCE_DATA_DIR": str(tmp / "data"),
            "DETERRENCE_STORE_ENABLED": "false",
        }
        self.ports = {name: free_port() for name in ("site", "proxy", "authz", "nginx")}

    @contextlib.contextmanager
    def running(self) -> Iterator[dict[str, int]]:
        """The site, the proxy and the decision service; yields their pids."""
        ports = self.ports
        site_cmd = python("uvicorn", "bench.proxy:site", "--factory", "--port", str(ports["site"]))
        site_cmd += ["--no-access-log", "--log-level", "warning"]
        site_env = {"BENCH_SITE_DELAY_MS": str(self.site_delay_ms)}
        proxy_cmd = python("deterrence", "proxy", "--port", str(ports["proxy"]))
        proxy_cmd += ["--upstream", f"http://127.0.0.1:{ports['site']}", "--no-access-log"]
        authz_cmd = python("deterrence", "authz", "--port", str(ports["authz"]), "--no-access-log")
        with (
            started(site_cmd, ports["site"], site_env) as site,
            started(proxy_cmd, ports["proxy"], self.env) as proxy,
            started(authz_cmd, ports["authz"], self.env) as authz,
        ):
            yield {"site": site, "proxy": proxy, "authz": authz}

    @contextlib.contextmanager
    def nginx(self, with_authz: bool) -> Iterator[int]:
        conf = nginx_config(
            self.tmp,
            listen=self.ports["nginx"],
            site=self.ports["site"],
            authz=self.ports["authz"],
            with_authz=with_authz,
        )
        command = [nginx_binary(), "-p", str(conf.parent), "-c", str(conf)]
        command += ["-e", str(conf.parent / "error.log")]
        with started(command, self.ports["nginx"]) as master:
            yield master

    def load(
        self, name: str, seconds: int, pids: dict[str, int]
    ) -> tuple[float, str, dict[str, float]]:
        """Load one configuration; returns req/s, p99 and CPU µs per request by process."""
        if name in ("direct", "proxy"):
            port = self.ports["site" if name == "direct" else "proxy"]
            return self._timed(port, seconds, pids)
        with self.nginx(with_authz=name == "nginx+authz") as master:
            run_wrk(self.ports["nginx"], self.script, 1, self.connections)  # warm-up
            workers = {f"nginx{i}": pid for i, pid in enumerate(children(master))}
            rate, p99, cpu = self._timed(self.ports["nginx"], seconds, {**pids, **workers})
        nginx_cpu = sum(v for k, v in cpu.items() if k.startswith("nginx"))
        cpu = {k: v for k, v in cpu.items() if not k.startswith("nginx")}
        return rate, p99, {**cpu, "nginx": nginx_cpu}

    def _timed(
        self, port: int, seconds: int, pids: dict[str, int]
    ) -> tuple[float, str, dict[str, float]]:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        rate, p99 = run_wrk(port, self.script, seconds, self.connections)
        requests = rate * seconds
        cpu = {
            name: (cpu_seconds(pid) - before[name]) / requests * 1e6 for name, pid in pids.items()
        }
        return rate, p99, cpu


def measure(
    seconds: int,
    rounds: int,
    connections: int,
    soak: int,
    site_delay_ms: float = 0,
    warm_up: int = 60,
) -> dict[str, object]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench.proxy needs wrk (apt-get install wrk)")
    results = {name: Result([], [], {}) for name in CONFIGURATIONS}
    memory: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        bench = Bench(Path(directory), connections, site_delay_ms)
        with bench.running() as pids:
            for name in ("direct", "proxy"):
                bench.load(name, 2, pids)  # warm-up
            for round_number in range(rounds):
                for name in CONFIGURATIONS:
                    rate, p99, cpu = bench.load(name, seconds, pids)
                    result = results[name]
                    result.rates.append(rate)
                    result.p99.append(p99)
                    for process, value in cpu.items():
                        result.cpu_us.setdefault(process, []).append(value)
                    costs = "  ".join(f"{k} {v:.0f}" for k, v in cpu.items() if v >= 1)
                    print(
                        f"round {round_number + 1} {name:>12}: {rate:8.0f} req/s  p99 {p99:>8}"
                        f"  CPU us/request: {costs}"
                    )
            if soak:
                # A server's first few hundred thousand requests warm its allocator up
                # (the decision service: +2-3 MB over ~300,000 decisions, then flat for
                # minutes), so each soak follows a warm-up of its own, reported apart;
                # the soak runs in two halves, so that growth that goes on shows twice.
                for name, target in (("proxy", "proxy"), ("authz", "nginx+authz")):
                    cold = rss_mb(pids[name])
                    if warm_up:
                        bench.load(target, warm_up, pids)
                    before = rss_mb(pids[name])
                    print(
                        f"warm-up {warm_up} s via {target}: {name} RSS {cold:.1f}"
                        f" -> {before:.1f} MB"
                    )
                    bench.load(target, soak // 2, pids)
                    middle = rss_mb(pids[name])
                    bench.load(target, soak - soak // 2, pids)
                    after = rss_mb(pids[name])
                    memory[name] = (before, middle, after)
                    print(
                        f"soak {soak} s via {target}: {name} RSS {before:.1f} -> {middle:.1f}"
                        f" (half-way) -> {after:.1f} MB"
                    )

    median = {name: statistics.median(r.rates) for name, r in results.items()}

    def paired(a: str, b: str) -> float:
        """The median of the rounds' own ratios: a busy spell on this shared machine
        slows both sides of a round, but not the rounds alike."""
        pairs = zip(results[a].rates, results[b].rates, strict=True)
        return statistics.median(x / y for x, y in pairs)

    ratios = {
        "proxy / direct": (paired("proxy", "direct"), 0.50),
        "nginx+authz / nginx": (paired("nginx+authz", "nginx"), 0.70),
        "nginx / direct": (paired("nginx", "direct"), None),
        "nginx+authz / direct": (paired("nginx+authz", "direct"), None),
    }
    print()
    for name, result in results.items():
        costs = "  ".join(
            f"{k} {statistics.median(v):.0f}"
            for k, v in result.cpu_us.items()
            if statistics.median(v) >= 1
        )
        print(
            f"{name:>12}: median {median[name]:8.0f} req/s, p99 {'/'.join(result.p99)}; "
            f"CPU us/request: {costs}"
        )
    for label, (ratio, bound) in ratios.items():
        verdict = "" if bound is None else (" ok" if ratio >= bound else " BELOW TARGET")
        goal = "" if bound is None else f" (target >= {bound:.2f})"
        print(f"{label:>22}: {ratio:.3f}{goal}{verdict}  (median of the rounds' ratios)")
    return {"median": median, "ratios": ratios, "results": results, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--soak", type=int, default=60, help="seconds per soak; 0 skips it")
    parser.add_argument(
        "--warm-up", type=int, default=60, help="seconds of load before each soak's first reading"
    )
    parser.add_argument(
        "--site-delay-ms", type=float, default=0, help="simulated search backend latency"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"site delay {args.site_delay_ms} ms, {args.connections} connections")
    measure(
        args.seconds, args.rounds, args.connections, args.soak, args.site_delay_ms, args.warm_up
    )


if __name__ == "__main__":
    main()
