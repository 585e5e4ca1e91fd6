"""Build a :class:`~deterrence.matcher.Matcher` in a child process, for reloads.

Loading lists and building a matcher is Python code: on a thread of the serving
process it competes with the event loop for the interpreter lock, and requests
answered meanwhile wait (p99 ×4–5 in the soak). A child process builds on another
core and sends the matcher back pickled; unpickling it here costs about a quarter
of the build (5,000 terms: 0.05 s against 0.17 s). It comes in pieces
(:mod:`deterrence.pieces`), and between them this thread lets the event loop
run what it has ready, so requests wait a millisecond or two at most.

The children come from a warm build process (a "zygote", as Android calls it): an
interpreter started at the first reload, which imports the package once and then
forks one child per build. A fresh interpreter per build cost ~0.1 s of imports
each time, and its start-up, on a core that requests need right then: in
bench.soak's proxy, 8.5 % of the requests sent in the first 50 ms of a reload were
slower than the p99 at other times with any child that had to start an interpreter
(even one that answered at once from a file), 0.7 % with no child, and 3.6 % with
children forked from the warm process (docs/benchmarks.md). The
warm process exits after ``IDLE_SECONDS`` without a build, so a server whose lists
change daily keeps no idle interpreter; it holds no matcher, only the imports and
the lists it parsed last.

It parses the lists itself, again only the files whose content changed, and sends
them first, each as it differs from the parse the server holds (a list that gained
terms: those terms; 5,000 terms and one more: 0.2 ms of decoding here, against
2.2 ms, in one hold of the interpreter lock, for all of them again). When they are
the lists in service with terms added, the server grows its matcher
(``Matcher.extended``) and no child is forked at all.
It and its children run in a process group of their own, so a Ctrl-C or hang-up
meant for the server does not reach them, but in the server's session: with the
scheduler's autogroups (Linux's default), each session shares the CPU equally
whatever its processes' nice values, so a child in a session of its own would
build at full weight beside the whole server (in bench.soak, request p99 43-56 ms
in the seconds of a proxy's reload, against 8 ms at other times), while in the
server's session its low priority (SCHED_IDLE, else nice 19) yields to it.
:meth:`ChildBuilder.close` kills the warm process and whatever is still building;
so does the end of the server (the warm process reads end-of-file on its socket
and exits).

The child's answer is unpickled: it comes from the same interpreter and the same
package through a private file, so it is trusted like this process's own code. The
warm process imports the package from disk, though: once a file of it has changed
since this process started (a deploy that has not restarted the server yet), its
classes may not fit this process's code — a matcher whose methods fail on its data —
so the build runs here instead until a restart.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import deterrence
from deterrence import pieces
from deterrence.collector import collector_paused, young_collection
from deterrence.lists import Appended, ListError, ParsedFiles, TermList, load_lists
from deterrence.matcher import Matcher

__all__ = ["BuildCancelled", "BuildUnavailable", "ChildBuilder", "build_here", "zygote_main"]

TIMEOUT_SECONDS = 120.0
"""A child that has not answered by then is killed (the target is 10 s at 100,000 terms)."""

_MAGIC = b"deterrence-matcher-1\n"
"""Starts a good answer, so that anything else in the answer file is never unpickled."""

_PACKAGE_ROOT = str(Path(deterrence.__file__).resolve().parent.parent)

IDLE_SECONDS = 600.0
"""The warm build process exits after this long without a build."""

# The warm process imports this very package (whatever sys.path or the working
# directory say), at the lowest priority: on a busy machine the cores go to answering
# requests first (at nice 10 a build still took a tenth of a saturated core from
# them), and a spare core builds at full speed anyway. Linux's SCHED_IDLE goes
# further than nice 19: a server thread that wakes preempts it at once, where
# nice 19 may finish its slice first (in bench.soak's proxy, probes sent in the
# first 15 ms of a reload were slow 7-11 % of the time at nice 19, 1-2 % under
# SCHED_IDLE). Nice 19 stays where SCHED_IDLE is refused or missing.
_ZYGOTE_CODE = (
    "import os, sys\n"
    "os.nice(19)\n"
    "try:\n"
    "    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "except (AttributeError, OSError):\n"
    "    pass\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from deterrence.child_build import zygote_main\n"
    "zygote_main(int(sys.argv[-1]), float(sys.argv[-2]))\n"
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
    """Builds matchers in children of a warm build process; safe to use from
    several threads (their builds take turns)."""

    def __init__(self, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.idle_seconds = IDLE_SECONDS
        self.command = [sys.executable, "-c", _ZYGOTE_CODE, _PACKAGE_ROOT]
        """The warm process; its idle time and its socket's descriptor are appended."""
        self._lock = threading.Lock()
        """Guards ``_zygote`` and ``_closed``; never held while waiting for one."""
        self._turn = threading.Lock()
        """Held for a whole build: the warm process answers one at a time."""
        self._zygote: _Zygote | None = None
        self._closed = False
        self._sent: dict[str, tuple[str, TermList]] = {}
        """The lists of the warm process's last load, by path: (sha256 of the file, list)."""

    def build(
        self,
        files: Sequence[Path],
        pause: Callable[[], None] = pieces.hand_over,
        base: Matcher | None = None,
    ) -> Matcher:
        """A matcher over ``files``, read in pieces with ``pause()`` between them
        (``pieces.hand_over_to`` lets an event loop go first). Raises ListError for
        a broken list (as ``load_lists`` does), BuildUnavailable, or BuildCancelled.

        The warm process parses the lists (again only where a file changed) and
        sends them here; when they are ``base``'s lists with terms added, the
        matcher is ``base.extended`` (a few milliseconds here), else a child builds
        it."""
        # Read with the collector paused until the lists have grown ``base``: they
        # are mostly its lists again, and then share its rows (Terms.beyond), so
        # their own die young, unless a young collection walked all of them first
        # (5,000 terms: 1-5 ms in one hold of the interpreter lock). Not while the
        # warm process parses: that may take long, and is no reason to pause it.
        with self._answer("load", files, base) as answer, collector_paused():
            lists = self._lists(_decode(answer, pause, in_pieces=False))
            grown = base.extended(lists, pause) if base is not None else None
        if grown is not None:
            return grown
        with self._answer("build", files) as answer:
            matcher = _decode(answer, pause, in_pieces=True)
        if not isinstance(matcher, Matcher):
            raise BuildUnavailable(f"the build process sent {type(matcher).__name__}")
        return matcher

    @contextlib.contextmanager
    def _answer(
        self, what: str, files: Sequence[Path], base: Matcher | None = None
    ) -> Iterator[IO[bytes]]:
        """The warm process's answer to ``what`` for ``files``, past its magic; for
        a load, it sends the lists as they differ from those of ``base`` it sent."""
        # The answer goes to a file, read a frame at a time: no pipe chunks to join,
        # and no copy of it on this process's heap (whose pages the allocator would keep).
        with self._turn, tempfile.TemporaryFile() as answer, tempfile.TemporaryFile() as errors:
            held = self._held_by(base) if what == "load" else {}
            request = json.dumps([what, [str(f) for f in files], held]).encode()
            status = self._run(request, answer, errors)
            _same_code()  # again: a deploy may have begun while the child built
            size = os.fstat(answer.fileno()).st_size
            if status != 0 or size <= len(_MAGIC):
                raise BuildUnavailable(
                    f"the build process exited with status {status}: {_last_line(errors)}"
                )
            answer.seek(0)
            if answer.read(len(_MAGIC)) != _MAGIC:
                raise BuildUnavailable("the build process answered something else")
            yield answer

    def _held_by(self, base: Matcher | None) -> dict[str, str]:
        """The sha256 of each list file whose parse, as the warm process sent it
        last, ``base`` holds (the very object: what it holds came from that parse)."""
        if base is None:
            return {}
        in_base = {id(term_list) for term_list in base.lists}
        return {path: digest for path, (digest, sent) in self._sent.items() if id(sent) in in_base}

    def _lists(self, changes: object) -> tuple[TermList, ...]:
        """The lists that a load's ``changes`` (``ParsedFiles.load_changes``) stand for."""
        if not isinstance(changes, tuple):
            raise BuildUnavailable(f"the build process sent {type(changes).__name__}, not lists")
        sent: dict[str, tuple[str, TermList]] = {}
        for change in changes:
            if not isinstance(change, tuple) or len(change) != 3:
                raise BuildUnavailable("the build process sent something else than list changes")
            path, digest, term_list = change
            if term_list is None or isinstance(term_list, Appended):
                if path not in self._sent:
                    raise BuildUnavailable(
                        f"the build process sent {path} as a change to a parse this"
                        " process never had"
                    )
                held = self._sent[path][1]
                term_list = held if term_list is None else term_list.onto(held)
            elif not isinstance(term_list, TermList):
                raise BuildUnavailable(
                    f"the build process sent {type(term_list).__name__}, not a list"
                )
            sent[path] = (digest, term_list)
        self._sent = sent
        return tuple(term_list for _, term_list in sent.values())

    def _run(self, request: bytes, answer: IO[bytes], errors: IO[bytes]) -> int:
        """Have the warm process fork a child that answers into ``answer``; its exit
        status. A warm process that is gone before taking the request (it exits when
        idle) is replaced once."""
        for attempt in (1, 2):
            zygote = self._warm()
            try:
                return zygote.run(request, answer, errors, self.timeout)
            except BuildUnavailable as exc:
                self._discard(zygote)
                if self._is_closed():
                    raise BuildCancelled from exc
                if attempt == 2 or not isinstance(exc, _NotTaken) or not exc.was_ready:
                    raise
        raise AssertionError("unreachable")

    def _warm(self) -> _Zygote:
        with self._lock:
            if self._closed:
                raise BuildCancelled
            zygote = self._zygote
            if zygote is not None and zygote.process.poll() is None:
                return zygote
            self._zygote = None
            if not _is_python(self.command[0]):
                # Embedded servers (uWSGI, mod_wsgi) name themselves here: never run those.
                raise BuildUnavailable(f"{self.command[0]!r} is not a Python interpreter")
            _same_code()
            self._zygote = zygote = _Zygote.start([*self.command, str(self.idle_seconds)])
            return zygote

    def _is_closed(self) -> bool:
        with self._lock:
            return self._closed

    def _discard(self, zygote: _Zygote) -> None:
        with self._lock:
            if self._zygote is zygote:
                self._zygote = None
        zygote.kill()

    def close(self) -> None:
        """Kill the warm process and every child still building, and reap it;
        later builds raise BuildCancelled."""
        with self._lock:
            self._closed = True
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.kill()

    def open(self) -> None:
        """Allow builds again after :meth:`close`."""
        with self._lock:
            self._closed = False


class _NotTaken(BuildUnavailable):
    """The warm process ended before it took the request: no build ran."""

    def __init__(self, message: str, *, was_ready: bool) -> None:
        super().__init__(message)
        self.was_ready = was_ready


class _Zygote:
    """The warm build process, and this end of its socket."""

    def __init__(
        self, process: subprocess.Popen[bytes], sock: socket.socket, log: IO[bytes]
    ) -> None:
        self.process = process
        self.sock = sock
        self.log = log
        """Its stderr: why it could not start, if it could not."""
        self.ready = False
        # A builder dropped without close() takes its warm process with it.
        self._end = weakref.finalize(self, _end, process, sock, log)

    @classmethod
    def start(cls, command: list[str]) -> _Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the process runs
        try:
            process = subprocess.Popen(
                [*command, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                process_group=0,
            )
        except (OSError, ValueError) as exc:
            ours.close()
            log.close()
            raise BuildUnavailable(f"cannot start {command[0]}: {exc}") from exc
        finally:
            theirs.close()
        # Reaped as soon as it ends, idle or killed: no zombie waits for the next reload.
        threading.Thread(target=process.wait, name="deterrence-build-reaper", daemon=True).start()
        return cls(process, ours, log)

    def run(self, request: bytes, answer: IO[bytes], errors: IO[bytes], timeout: float) -> int:
        deadline = time.monotonic() + timeout
        if not self.ready:
            self._expect((b"ready",), deadline)
            self.ready = True
        try:
            socket.send_fds(self.sock, [request], [answer.fileno(), errors.fileno()])
        except OSError as exc:
            raise _NotTaken(f"the build process is gone: {exc}", was_ready=True) from exc
        # A load is answered by the warm process itself ("done"); a build, by a child.
        word, status = self._expect((b"started", b"done"), deadline)
        if word == b"started":
            _, status = self._expect((b"exited",), deadline)
        try:
            return int(status)
        except ValueError:
            raise BuildUnavailable(f"the build process said exited {status[:20]!r}") from None

    def _expect(self, words: tuple[bytes, ...], deadline: float) -> tuple[bytes, bytes]:
        """The next message, which must start with one of ``words``: (that word, the rest)."""
        try:
            self.sock.settimeout(max(0.0, deadline - time.monotonic()))
            message = self.sock.recv(256)
        except TimeoutError as exc:
            raise BuildUnavailable(f"no answer from the build process: {exc}") from exc
        except OSError:  # closed here by close(), or reset
            message = b""
        if not message:
            try:
                status: int | None = self.process.wait(timeout=5)  # it is exiting
            except subprocess.TimeoutExpired:
                status = None
            why = f"the build process ended (status {status}): {_last_line(self.log)}"
            if words == (b"ready",):
                raise _NotTaken(why, was_ready=False)
            if b"started" in words:  # it ended before it took the request
                raise _NotTaken(why, was_ready=True)
            raise BuildUnavailable(why)
        head, _, rest = message.partition(b" ")
        if head not in words:
            raise BuildUnavailable(f"the build process said {message[:40]!r}")
        return head, rest

    def kill(self) -> None:
        """Kill it and its children (one process group), and reap it."""
        self._end()


def _end(process: subprocess.Popen[bytes], sock: socket.socket, log: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    # Waited for until it is reaped (by the reaper thread, or here): a stopped
    # server leaves no child, not even a zombie.
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        process.wait(timeout=5)
    sock.close()
    log.close()


def _last_line(log: IO[bytes]) -> str:
    try:
        log.seek(0)
        last = log.read().decode("utf-8", "replace").strip().splitlines()[-1:]
    except (OSError, ValueError):
        return "-"
    return (last or ["-"])[0]


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
            # Not Path(file).stat(): a quarter of the time, at every reload.
            stat = os.stat(file)  # noqa: PTH116
        except OSError:
            return file  # gone: whatever replaces it is not what runs here
        if max(stat.st_ctime, stat.st_mtime) > PROCESS_STARTED:
            return file
    return None


def _is_python(executable: str) -> bool:
    return Path(executable).name.lower().startswith("python") and os.access(executable, os.X_OK)


def build_here(files: Sequence[Path], base: Matcher | None = None) -> Matcher:
    """Build in this process, yielding the interpreter lock often (the fallback);
    ``base.extended`` when the lists are ``base``'s with terms added."""
    with yielding_often():
        lists = load_lists(files)
        return (base.extended(lists) if base is not None else None) or Matcher(lists)


def _decode(answer: IO[bytes], pause: Callable[[], None], *, in_pieces: bool) -> object:
    """The object in ``answer``: written by ``pieces.dump`` when ``in_pieces`` (a
    matcher: a young collection after each piece), else by ``pieces.dump_whole``
    (list changes: none here, see ``ChildBuilder.build``). Raises ListError for the
    warm process's answer that a list is broken, BuildUnavailable for anything
    unreadable."""
    try:
        # At the usual switch interval: the pauses hand the lock over between
        # pieces, and a short interval would make this thread take it back from
        # the event loop in the middle of a request.
        with collector_paused() as paused:
            # The piece's objects, while there are few of them: its tuples of
            # strings stop being tracked, and the rest moves on, instead of one
            # young generation of the whole matcher (5,000 terms: a 20-48 ms
            # collection right after the load).
            settle = young_collection(paused and in_pieces)

            def between_pieces() -> None:
                settle()
                pause()

            status, value = cast(tuple[str, Any], pieces.load(answer, between_pieces))
    except Exception as exc:  # a truncated or foreign answer: build here instead
        raise BuildUnavailable(f"unreadable answer: {type(exc).__name__}: {exc}") from exc
    if status == "error":
        raise ListError(value)
    if status != "ok":
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


def zygote_main(fd: int, idle_seconds: float) -> None:
    """The warm build process. Each request on socket ``fd`` is JSON, ``[what,
    files, held]``, with two descriptors: for the answer, and for errors. It
    answers a ``load`` itself: the lists, parsed again only where a file changed,
    as they differ from the parses whose sha256 ``held`` names by path
    (``ParsedFiles.load_changes``); a ``build``, in a forked child (which finds the
    lists parsed already). Exits at
    end-of-file (its server is gone) or after ``idle_seconds`` without a request."""
    gc.collect()
    gc.freeze()  # what the imports made stays put: the children copy fewer pages
    parsed = ParsedFiles()
    server = socket.socket(fileno=fd)
    server.settimeout(idle_seconds)
    server.send(b"ready")
    while True:
        try:
            request, fds, _, _ = socket.recv_fds(server, 1 << 16, 2)
        except (TimeoutError, OSError):
            return  # idle, or the server closed its end
        if not request or len(fds) != 2:
            return
        answer, errors = fds
        what, names, held = json.loads(request)
        paths = [Path(name) for name in names]
        if what == "load":
            changes = functools.partial(parsed.load_changes, held=held)
            status = _answer(changes, paths, answer, errors, pieces.dump_whole)
            server.send(b"done %d" % status)
            continue
        child = os.fork()
        if child == 0:
            server.close()
            os.dup2(errors, 2)  # whatever else it says, even from C
            gc.disable()  # a short life: collecting cycles would only slow the build down
            # Exits without freeing anything: that would only delay the answer.
            os._exit(_answer(lambda p: Matcher(parsed.load_lists(p)), paths, answer, errors))
        os.close(answer)
        os.close(errors)
        server.send(b"started %d" % child)
        _, status = os.waitpid(child, 0)
        server.send(b"exited %d" % os.waitstatus_to_exitcode(status))


def _answer(
    make: Callable[[list[Path]], object],
    paths: list[Path],
    answer: int,
    errors: int,
    dump: Callable[[object, IO[bytes]], None] = pieces.dump,
) -> int:
    """Write ``make(paths)`` (or the list problems it raised) to descriptor ``answer``
    with ``dump``, and any other exception to ``errors``; close both. The exit
    status: 0 if answered."""
    with os.fdopen(answer, "wb") as out, os.fdopen(errors, "w") as log:
        try:
            outcome: tuple[str, object]
            try:
                outcome = ("ok", make(paths))
            except ListError as exc:
                # ListError itself does not survive pickling (its args are the joined text).
                outcome = ("error", exc.problems)
            out.write(_MAGIC)
            dump(outcome, out)
        except BaseException:
            traceback.print_exc(file=log)
            return 1
    return 0
