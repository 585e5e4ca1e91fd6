"""The decision service's own cost: ``deterrence authz`` on its builtin server and
under uvicorn (``--server uvicorn``), against an ASGI app that answers every
request with an empty 200 under the same uvicorn (the floor of any ASGI server).

All three run side by side on one core; wrk on the other core asks each in turn,
in short windows (the order turning each round), the way nginx's ``auth_request``
does: ``GET /nginx`` with ``X-Original-URI`` and ``X-Original-Method``, over the
innocent search mix of bench.middleware. Prints each window, the CPU time per
decision of each, and the throughput ratios to the floor. bench.proxy measures
the whole chain with nginx.

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
    names = ("floor", "uvicorn", "builtin")
    ports = {name: free_port() for name in names}
    commands = {
        "floor": python("uvicorn", "bench.authz:empty_200", "--port", str(ports["floor"]),
                        "--no-access-log", "--log-level", "warning"),
        "uvicorn": python("deterrence", "authz", "--port", str(ports["uvicorn"]),
                          "--server", "uvicorn", "--no-access-log"),
        "builtin": python("deterrence", "authz", "--port", str(ports["builtin"])),
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
            started(commands["uvicorn"], ports["uvicorn"], env) as uvicorn,
            started(commands["builtin"], ports["builtin"], env) as builtin,
        ):
            pids = {"floor": floor, "uvicorn": uvicorn, "builtin": builtin}
            for name in names:
                pin(pids[name], 1)
                run_wrk(ports[name], script, 2, args.connections)  # warm-up
            for round_number in range(args.rounds):
                turn = round_number % len(names)
                for name in names[turn:] + names[:turn]:
                    before = cpu_seconds(pids[name])
                    rate, p99 = run_wrk(ports[name], script, args.seconds, args.connections)
                    cpu = (cpu_seconds(pids[name]) - before) / (rate * args.seconds) * 1e6
                    rates[name].append(rate)
                    cpu_us[name].append(cpu)
                    print(
                        f"round {round_number + 1:2d} {name:>7}: {rate:8.0f} decisions/s"
                        f"  p99 {p99}  CPU {cpu:5.1f} us/decision"
                    )
    cpu = {name: statistics.median(cpu_us[name]) for name in names}
    print(
        "CPU per decision (median): "
        + ", ".join(f"{name} {value:.1f} us" for name, value in cpu.items())
    )
    for name in ("uvicorn", "builtin"):
        ratios = [a / f for f, a in zip(rates["floor"], rates[name], strict=True)]
        print(
            f"throughput {name}/floor {statistics.median(ratios):.3f}"
            f" (median of {args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
