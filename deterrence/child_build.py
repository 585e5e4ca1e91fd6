"""Build a :class:`~deterrence.matcher.Matcher` in a child process, for reloads.

Loading lists and building a matcher is Python code: on a thread of the serving
process it competes with the event loop for the interpreter lock, and requests
answered meanwhile wait (p99 ×4–5 in the soak). A child process builds on another
core and sends the matcher back pickled; unpickling it here costs about a quarter
of the build (5,000 terms: 0.05 s against 0.17 s). It comes in pieces
(:mod:`deterrence.pieces`), and between them this thread lets the event loop
run what it has ready, so requests wait a millisecond or two at most.

One fresh interpreter per build, not a long-lived worker: lists change rarely, a
build costs ~0.1 s of imports on the other core, and nothing sits idle holding a
copy of the matcher's memory in every server process. The child runs in a process
group of its own, so a Ctrl-C or hang-up meant for the server does not reach it,
but in the server's session: with the scheduler's autogroups (Linux's default),
each session shares the CPU equally whatever its processes' nice values, so a child
in a session of its own would build at full weight beside the whole server (in
bench.soak, request p99 43-56 ms in the seconds of a proxy's reload, against 8 ms
at other times), while in the server's session its nice 19 yields to it.
:meth:`ChildBuilder.close` kills whatever is still building.

The child's answer is unpickled: it comes from the same interpreter and the same
package through a private file, so it is trusted like this process's own code. The
child imports the package from disk, though: once a file of it has changed since this
process started (a deploy that has not restarted the server yet), the child's classes
may not fit this process's code — a matcher whose methods fail on its data — so the
build runs here instead until a restart.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import deterrence
from deterrence import pieces
from deterrence.collector import collector_paused
from deterrence.lists import ListError, load_lists
from deterrence.matcher import Matcher

__all__ = ["BuildCancelled", "BuildUnavailable", "ChildBuilder", "build_here", "child_main"]

TIMEOUT_SECONDS = 120.0
"""A child that has not answered by then is killed (the target is 10 s at 100,000 terms)."""

_MAGIC = b"deterrence-matcher-1\n"
"""Starts a good answer, so that anything else on stdout is never unpickled."""

_PACKAGE_ROOT = str(Path(deterrence.__file__).resolve().parent.parent)

# The child imports this very package (whatever sys.path or the working directory say),
# at the lowest priority: on a busy machine the cores go to answering requests first
# (at nice 10 a build still took a tenth of a saturated core from them), and a spare
# core builds at full speed anyway.
_CHILD_CODE = (
    "import os, sys; os.nice(19); sys.path.insert(0, sys.argv[1]); "
    "from deterrence.child_build import child_main; child_main()"
)

_SWITCH_INTERVAL = 0.0005


def _process_started() -> float:
    """When this process started (Linux: /proc, +1 s for btime's whole seconds)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK") + 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return float("inf")


PROCESS_STARTED = min(time.time(), _process_started())
"""Since when this process runs the code it has: its start, or this import if earlier
(a gunicorn worker forked from a master that preloaded the app runs the master's code)."""


class BuildUnavailable(Exception):
    """The child could not be started, died, timed out or answered nonsense."""


class BuildCancelled(Exception):
    """:meth:`ChildBuilder.close` stopped the build (the server is shutting down)."""


class ChildBuilder:
    """Builds matchers in child processes; safe to use from several threads."""

    def __init__(self, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.command = [sys.executable, "-c", _CHILD_CODE, _PACKAGE_ROOT]
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._killed: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def build(self, files: Sequence[Path], pause: Callable[[], None] = pieces.hand_over) -> Matcher:
        """A matcher over ``files``, read in pieces with ``pause()`` between them
        (``pieces.hand_over_to`` lets an event loop go first). Raises ListError for
        a broken list (as ``load_lists`` does), BuildUnavailable, or BuildCancelled."""
        request = json.dumps([str(f) for f in files]).encode()
        # The answer goes to a file, read a frame at a time: no pipe chunks to join,
        # and no copy of it on this process's heap (whose pages the allocator would keep).
        with tempfile.TemporaryFile() as answer:
            child = self._start(answer)
            try:
                errors = self._wait(child, request)
            finally:
                with self._lock:
                    self._running.discard(child)
                    killed = child in self._killed
                    self._killed.discard(child)
            if killed:
                raise BuildCancelled
            _same_code()  # again: a deploy may have begun while the child was importing
            size = os.fstat(answer.fileno()).st_size
            if child.returncode != 0 or size <= len(_MAGIC):
                last = errors.decode("utf-8", "replace").strip().splitlines()[-1:]
                raise BuildUnavailable(
                    f"the child exited with status {child.returncode}: {(last or ['-'])[0]}"
                )
            answer.seek(0)
            if answer.read(len(_MAGIC)) != _MAGIC:
                raise BuildUnavailable("the child answered something else")
            return _decode(answer, pause)

    def _start(self, answer: IO[bytes]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._closed:
                raise BuildCancelled
            if not _is_python(self.command[0]):
                # Embedded servers (uWSGI, mod_wsgi) name themselves here: never run those.
                raise BuildUnavailable(f"{self.command[0]!r} is not a Python interpreter")
            _same_code()
            try:
                child = subprocess.Popen(
                    self.command,
                    stdin=subprocess.PIPE,
                    stdout=answer,
                    stderr=subprocess.PIPE,
                    process_group=0,
                )
            except (OSError, ValueError) as exc:
                raise BuildUnavailable(f"cannot start {self.command[0]}: {exc}") from exc
            self._running.add(child)
            return child

    def _wait(self, child: subprocess.Popen[bytes], request: bytes) -> bytes:
        """Send the request; the child's stderr once it has exited."""
        try:
            _, errors = child.communicate(request, timeout=self.timeout)
        except (subprocess.TimeoutExpired, OSError) as exc:
            child.kill()
            with contextlib.suppress(OSError, ValueError):
                child.communicate()  # closes the pipes and reaps it: no zombie
            raise BuildUnavailable(f"no answer from the child: {exc}") from exc
        return errors

    def close(self) -> None:
        """Kill every child still building, and reap it; later builds raise
        BuildCancelled."""
        with self._lock:
            self._closed = True
            killed = list(self._running)
            for child in killed:
                self._killed.add(child)
                with contextlib.suppress(OSError):
                    child.kill()
        for child in killed:
            # Reaped here too, not only by the thread of its build, which may
            # outlive a server's shutdown: a stopped server leaves no child, not
            # even a zombie. Popen.wait holds a lock, so that thread's own wait
            # then finds it reaped.
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                child.wait(timeout=5)

    def open(self) -> None:
        """Allow builds again after :meth:`close`."""
        with self._lock:
            self._closed = False


def _same_code() -> None:
    if changed := changed_since_start():
        raise BuildUnavailable(
            f"{changed} changed since this process started, so a child would run other"
            " code; restart to build in child processes again"
        )


def changed_since_start() -> str | None:
    """A source file of deterrence (or of the automaton's extension) that changed on
    disk after this process started, if any. ctime, not mtime: a copy that keeps the
    old mtime, or a rename into place, still sets it."""
    for name, module in list(sys.modules.items()):
        if name != "ahocorasick" and name != "deterrence" and not name.startswith("deterrence."):
            continue
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        try:
            stat = Path(file).stat()
        except OSError:
            return file  # gone: whatever replaces it is not what runs here
        if max(stat.st_ctime, stat.st_mtime) > PROCESS_STARTED:
            return file
    return None


def _is_python(executable: str) -> bool:
    return Path(executable).name.lower().startswith("python") and os.access(executable, os.X_OK)


def build_here(files: Sequence[Path]) -> Matcher:
    """Build in this process, yielding the interpreter lock often (the fallback)."""
    with yielding_often():
        return Matcher(load_lists(files))


def _decode(answer: IO[bytes], pause: Callable[[], None]) -> Matcher:
    try:
        # At the usual switch interval: the pauses hand the lock over between
        # pieces, and a short interval would make this thread take it back from
        # the event loop in the middle of a request.
        with collector_paused() as paused:

            def between_pieces() -> None:
                if paused:
                    # The piece's objects, while there are few of them: its
                    # tuples of strings stop being tracked, and the rest moves
                    # on, instead of one young generation of the whole matcher
                    # (5,000 terms: a 20-48 ms collection right after the load).
                    gc.collect(0)
                pause()

            status, value = cast(tuple[str, Any], pieces.load(answer, between_pieces))
    except Exception as exc:  # a truncated or foreign answer: build here instead
        raise BuildUnavailable(f"unreadable answer: {type(exc).__name__}: {exc}") from exc
    if status == "error":
        raise ListError(value)
    if status != "ok" or not isinstance(value, Matcher):
        raise BuildUnavailable(f"unexpected answer {status!r}")
    return value


@contextlib.contextmanager
def yielding_often() -> Iterator[None]:
    """While this thread builds a matcher (the fallback), hand the interpreter lock
    back to the event loop every 0.5 ms instead of every 5 ms, so requests served
    meanwhile wait less. Process-wide, hence restored right after."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def child_main() -> None:
    """In the child: read the file names (JSON) from stdin, answer on stdout."""
    gc.disable()  # a short life: collecting cycles would only slow the build down
    files = [Path(name) for name in json.load(sys.stdin)]
    outcome: tuple[str, object]
    try:
        outcome = ("ok", Matcher(load_lists(files)))
    except ListError as exc:
        # ListError itself does not survive pickling (its args are the joined text).
        outcome = ("error", exc.problems)
    out = sys.stdout.buffer
    out.write(_MAGIC)
    pieces.dump(outcome, out)
    out.flush()
    os._exit(0)  # freeing the matcher object by object would only delay the answer
