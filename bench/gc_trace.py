"""A module run with its cycle collections timed, for bench.soak.

    python -m bench.gc_trace LOG MODULE [ARGS...]

runs ``python -m MODULE ARGS...`` and appends a line to LOG for each collection of
the cycle collector in that process: when it ended (``time.monotonic()``, which
other processes on the machine read alike), its generation, and how long it took.
A collection holds the interpreter lock from start to end, so a long one stalls
every request under way; bench.soak runs its servers this way to tell the
collections that follow a reload from the others. The cost is a Python call at
the start and end of each collection (a few a second under the soak's load).
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import time
from pathlib import Path

Collection = tuple[float, int, float]
"""(ended at, generation, seconds)."""


def install(log: Path) -> None:
    """Time this process's collections into ``log`` from now on."""
    out = log.open("a", buffering=1)  # a line at a time: readable while it runs
    pid = os.getpid()
    started = 0.0

    def timed(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if os.getpid() != pid:
            return  # a forked child's collections are not this process's
        if phase == "start":
            started = time.perf_counter()
        else:
            seconds = time.perf_counter() - started
            out.write(f"{time.monotonic():.6f} {info['generation']} {seconds:.6f}\n")

    gc.callbacks.append(timed)


def read(log: Path) -> list[Collection]:
    """The collections in ``log`` (none when it does not exist)."""
    if not log.exists():
        return []
    found: list[Collection] = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:  # a last line half-written when the process was stopped
            found.append((float(parts[0]), int(parts[1]), float(parts[2])))
    return found


def main() -> None:
    log, module, *args = sys.argv[1:]
    install(Path(log))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
