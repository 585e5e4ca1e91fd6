"""Pausing the cycle collector while a large structure of survivors is built.

Building a matcher allocates hundreds of thousands of containers (posting lists,
dicts, tuples) that all survive. Each allocation counts towards the collector's
next run, and each run walks the young objects, and now and then the whole heap,
without finding anything to free: at 100,000 terms a build took 5.5 s with the
collector running and 3.6 s with it paused. The same holds while a reload
unpickles a matcher, where every collection is also one hold of the interpreter
lock: 30,000 terms, 9 full collections in 4 reloads, up to 0.15 s each; none with
the collector paused.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[bool]:
    """Keep the cycle collector from starting on its own inside the block.
    Process-wide: other threads' garbage cycles wait for the block to end (a
    reload's unpickle, a few seconds of build at most). Yields whether it paused
    it: not when the collector was off already, and then it stays off."""
    if not gc.isenabled():
        yield False  # the application runs without it: leave that alone
        return
    gc.disable()
    try:
        yield True
    finally:
        gc.enable()
