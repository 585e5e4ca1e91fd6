"""The decision service's own cost: ``deterrence authz`` against an ASGI app that
answers every request with an empty 200, both under the same uvicorn.

Both run side by side on one core; wrk on the other core asks each in turn, in
short windows (ABBA order), the way nginx's ``auth_request`` does: ``GET /nginx``
with ``X-Original-URI`` and ``X-Original-Method``, over the innocent search mix of
bench.middleware. Prints each window, the CPU time per decision of both and the
difference — what deterrence adds to a decision above uvicorn's per-request floor —
and the throughput ratio. bench.proxy measures the whole chain with nginx.

    python -m bench.authz [--seconds 2] [--rounds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from starlette.types import Receive, Scope, Send

from bench.middleware import cpu_seconds, free_port, lua_script, pin, run_wrk
from bench.proxy import python, started


async def empty_200(scope: Scope, receive: Receive, send: Send) -> None:
    """The floor: an ASGI app that allows everything and does nothing else."""
    if scope["type"] != "http":
        return
    headers = [(b"cache-control", b"no-store"), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    names = ("floor", "authz")
    ports = {name: free_port() for name in names}
    commands = {
        "floor": python("uvicorn", "bench.authz:empty_200", "--port", str(ports["floor"]),
                        "--no-access-log", "--log-level", "warning"),
        "authz": python("deterrence", "authz", "--port", str(ports["authz"]), "--no-access-log"),
    }  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        # As nginx's auth_request asks: the search in headers, not in the path.
        script = lua_script(
            Path(tmp),
            request='wrk.format("GET", "/nginx", '
            '{["X-Original-URI"] = paths[i], ["X-Original-Method"] = "GET"})',
            name="authz.lua",
        )
        env = {"DETERRENCE_DATA_DIR": str(Path(tmp) / "data")}
        with (
            started(commands["floor"], ports["floor"], env) as floor,
            started(commands["authz"], ports["authz"], env) as authz,
        ):
            pids = {"floor": floor, "authz": authz}
            for name in names:
                pin(pids[name], 1)
                run_wrk(ports[name], script, 2, args.connections)  # warm-up
            for round_number in range(args.rounds):
                for name in names if round_number % 2 == 0 else names[::-1]:
                    before = cpu_seconds(pids[name])
                    rate, p99 = run_wrk(ports[name], script, args.seconds, args.connections)
                    cpu = (cpu_seconds(pids[name]) - before) / (rate * args.seconds) * 1e6
                    rates[name].append(rate)
                    cpu_us[name].append(cpu)
                    print(
                        f"round {round_number + 1:2d} {name:>5}: {rate:8.0f} decisions/s"
                        f"  p99 {p99}  CPU {cpu:5.1f} us/decision"
                    )
    floor_cpu, authz_cpu = (statistics.median(cpu_us[name]) for name in names)
    ratios = [a / f for f, a in zip(rates["floor"], rates["authz"], strict=True)]
    print(
        f"CPU per decision: floor {floor_cpu:.1f} us, deterrence authz {authz_cpu:.1f} us"
        f" (+{authz_cpu - floor_cpu:.1f} us); throughput authz/floor"
        f" {statistics.median(ratios):.3f} (median of {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
