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
import threading
from collections.abc import Callable, Iterator

__all__ = ["collector_paused", "young_collection"]

_lock = threading.Lock()
_depth = 0  # collector_paused blocks under way that this module's pause covers


@contextlib.contextmanager
def collector_paused() -> Iterator[bool]:
    """Keep the cycle collector from starting on its own inside the block.
    Process-wide: other threads' garbage cycles wait for the block to end (a
    reload's unpickle, a few seconds of build at most). Yields whether it is
    paused here: also inside an outer block, but not when the collector was off
    already, and then it stays off."""
    global _depth
    with _lock:
        ours = _depth > 0 or gc.isenabled()
        if ours:
            gc.disable()
            _depth += 1
    if not ours:
        yield False  # the application runs without it: leave that alone
        return
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.enable()


def young_collection(paused: bool) -> Callable[[], None]:
    """What collects the youngest generation now, inside a block that
    ``paused`` the collector (else nothing). Done after making a few tuples of
    plain values and before putting them into a copy of a big dict: they stop
    being tracked, and a dict given only untracked items stays untracked, so the
    collector never walks it (a dict copy keeps its original's tracking; a
    tracked item tracks it for good, until a full collection)."""
    return _collect_young if paused else _nothing


def _collect_young() -> None:
    gc.collect(0)


def _nothing() -> None:
    pass
