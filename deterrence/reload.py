"""Hot reload of term lists: a new list set goes into service without a restart and
without dropping or slowing a request.

:class:`MatcherHolder` owns the :class:`~deterrence.matcher.Matcher` in service. A
reload builds the new one in a child process (:mod:`deterrence.child_build`), waited
for on a worker thread, so the event loop keeps answering and the build does not take
its interpreter lock; then it replaces the ``matcher`` attribute in one assignment.
Lists that only gained terms, the usual edit, are not built at all: the warm build
process parses them, and the matcher in service grows by the new terms into a new
matcher (``Matcher.extended``; 5,000 terms and one more: 3 ms, against ~0.3 s of CPU
for a build and its transfer). When no child can be started, the build runs on the
worker thread instead (logged, and counted in ``MatcherHolder.build_fallbacks``). The
middleware reads that attribute once per request: every request is matched against
one list set from start to end, the old or the new, never a mix, and nothing waits
for a lock.

What starts a reload:

- **polling** (``settings.reload_poll_seconds``, 0 = off): the size, mtime and inode
  of every list file, and which files each configured directory holds, are compared
  each interval. A change must look the same on two polls in a row before it is
  loaded, so a file caught half-written is read once it is complete; a change that
  leaves every file's sha256 as it was (``touch``) rebuilds nothing;
- **SIGHUP**, when the app runs in the main thread of its process (``kill -HUP``);
- **POST {prefix}/admin/reload** (:mod:`deterrence.admin`);
- **list URLs** (``settings.list_urls``, polled every ``list_urls_poll_seconds``):
  see :mod:`deterrence.remote_lists`. SIGHUP and the admin endpoint fetch them too
  (conditional requests: an unchanged list costs a 304), file polling does not.

A list URL whose body cannot be cached at start-up (a full disk, a read-only data
directory), with no cached copy yet, is served from a temporary directory instead:
refusing to start would serve no list at all, while the lists in hand have been
fetched and checked like any other. It is counted (``list_cache``) and logged, and
moved to the real cache as soon as a later fetch finds it writable; until then a
restart without network would have no copy of it.

A reload is all or nothing. When any file fails to load, or a file that was in service
has vanished (a half-finished deploy looks exactly like that), the matcher in service
stays and the failure is counted — ``deterrence_list_reloads_total{result="error"}``
and ``deterrence_errors_total{kind="list_invalid"|"list_missing"}`` — and logged with
file and line. To retire a list, restart, or first set its ``action = "count"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import shutil
import signal
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio.to_thread

from deterrence import pieces, remote_lists
from deterrence.child_build import BuildCancelled, BuildUnavailable, ChildBuilder, build_here
from deterrence.hugepages import back_heap_with_huge_pages
from deterrence.lists import ListError, TermList, list_files
from deterrence.matcher import Matcher
from deterrence.remote_lists import CacheError, Fetched, FetchError, RemoteList
from deterrence.settings import Settings

__all__ = ["MatcherHolder", "ReloadResult"]

logger = logging.getLogger("deterrence.reload")

HUGE_PAGES_MIN_TERMS = 20_000
"""From this many terms a reload puts the heap back on huge pages (deterrence.hugepages).
The collapse is kernel work on a core the requests need, ~2.7 ms per MiB; it pays
for itself on large lists, which reload rarely (100,000 terms: 1 s once, then
first-sight matches 10-25 % faster), not on small ones (5,000 terms: 0.09 s at every
reload for 1-6 %; in bench.soak's proxy, 4-7 % of the requests in the seconds of a
reload were slower than the p99 at other times with it, against 2-4 % without)."""

MAX_PROBLEMS_SHOWN = 5
"""A reload error names at most this many problems (the log and dashboard stay readable)."""

Stat = tuple[int, int, int]
"""(inode, mtime in ns, size) of one file."""
Snapshot = tuple[tuple[str, Stat | None], ...]
"""Every list file (and every configured path that is missing, with None), sorted."""


class ReloadRecorder(Protocol):
    """The part of :class:`~deterrence.metrics.Recorder` a reload reports to."""

    def list_reload(
        self,
        result: Literal["ok", "error"],
        *,
        lists: tuple[TermList, ...] | None = None,
        error: str | None = None,
    ) -> None: ...

    def error(self, kind: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ReloadResult:
    result: Literal["ok", "error", "unchanged"]
    lists: tuple[TermList, ...]
    """The lists in service afterwards."""
    error: str | None = None
    """What was wrong, by file and line (never anything from a request)."""
    kind: str | None = None
    """``list_invalid``, ``list_missing``, ``list_cache`` (the list cache could not be
    written), or None for a list URL that could not be fetched."""

    def summary(self) -> dict[str, object]:
        return {
            "result": self.result,
            "error": self.error,
            "lists": [
                {"id": t.id, "action": t.action, "version": t.version, "terms": len(t.terms)}
                for t in self.lists
            ],
        }


class _ListsMissing(ListError):
    pass


@dataclass(frozen=True, slots=True)
class _Files:
    """The list files at one moment: their stat and their content's sha256."""

    snapshot: Snapshot
    digests: dict[str, str]

    @classmethod
    def now(cls, snapshot: Snapshot) -> _Files:
        return cls(snapshot, _digests(snapshot))


class MatcherHolder:
    """The matcher in service, and everything that replaces it.

    Builds the first matcher at once (raising :class:`~deterrence.lists.ListError`
    like ``Matcher.from_path``). ``recorder`` may be set later: the Recorder is built
    from the lists this loads. ``await start()`` / ``await stop()`` begin and end
    polling and the SIGHUP handler (the middleware calls them at lifespan start-up
    and shutdown).
    """

    def __init__(self, settings: Settings, *, recorder: ReloadRecorder | None = None) -> None:
        self.settings = settings
        self._uncounted: list[str] = []  # error kinds met before a recorder was set
        self.recorder = recorder
        self.paths = [Path(p) for p in settings.lists]
        allow_http = settings.list_urls_allow_http
        self.homes = [
            remote_lists.parse_list_url(url, settings.data_dir, allow_http=allow_http)
            for url in settings.list_urls
        ]
        """Where each list URL's copy is cached."""
        self.remotes = list(self.homes)
        """Where each list URL's copy in service is: its home, or a temporary directory."""
        self._temporary: Path | None = None
        self._lock = threading.Lock()
        self._seen: Snapshot = ()  # what polling last acted on
        self._candidate: Snapshot | None = None
        self._rejected: dict[str, str] = {}  # URL -> sha256 of content that failed to load
        self._tasks: set[asyncio.Task[object]] = set()
        self._signal_loop: asyncio.AbstractEventLoop | None = None
        self.builder = ChildBuilder()
        self._pause: Callable[[], None] = pieces.hand_over
        """Between pieces of a reload's work in this process; lets the event loop
        go first once ``start()`` has seen it."""
        self.build_fallbacks = 0
        """Reloads built in this process because no child process could build."""
        self.matcher: Matcher = self._first_load()

    @property
    def recorder(self) -> ReloadRecorder | None:
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: ReloadRecorder | None) -> None:
        """The Recorder is built from the lists loaded first: what went wrong while
        loading them is counted once it is set."""
        self._recorder = recorder
        if recorder is not None:
            for kind in self._uncounted:
                recorder.error(kind)
            self._uncounted.clear()

    def _count_error(self, kind: str) -> None:
        if self._recorder is None:
            self._uncounted.append(kind)
        else:
            self._recorder.error(kind)

    # --- loading ---------------------------------------------------------------

    def _first_load(self) -> Matcher:
        staged: list[Fetched] = []
        for index, remote in enumerate(self.remotes):
            if remote.cached():
                continue  # the last good copy; a poll, SIGHUP or the admin endpoint refresh it
            try:
                fetched = self._fetch(remote)
            except FetchError as exc:
                raise ListError([f"{exc} (and no cached copy in {remote.directory})"]) from exc
            except CacheError as exc:
                fetched = self._stage_elsewhere(index, exc)
            if fetched is not None:
                staged.append(fetched)
        try:
            matcher, self._in_service = self._build(staged)
        except ListError:
            for fetched in staged:
                remote_lists.discard(fetched)
            raise
        try:
            for fetched in staged:
                remote_lists.promote(fetched)
        except CacheError as exc:  # renames in a directory written a moment ago
            raise ListError([str(exc)]) from exc
        self._seen = self._snapshot()
        return matcher

    def _stage_elsewhere(self, index: int, error: CacheError) -> Fetched:
        """Stage a download whose cache cannot be written in a temporary directory,
        which then holds this list URL's copy in service (see the module docstring).
        Raises ListError when that cannot be written either."""
        assert error.download is not None  # staging, not promoting, failed
        if self._temporary is None:
            try:
                self._temporary = Path(tempfile.mkdtemp(prefix="deterrence-list-cache-"))
            except OSError as exc:
                raise ListError([f"{error}; nor a temporary copy: {exc.strerror}"]) from exc
            weakref.finalize(self, shutil.rmtree, self._temporary, ignore_errors=True)
        home = self.homes[index]
        moved = dataclasses.replace(home, directory=self._temporary / home.directory.name)
        try:
            fetched = remote_lists.stage(moved, error.download)
        except CacheError as again:
            raise ListError([f"{error}; nor {again}"]) from again
        self.remotes[index] = moved
        logger.error(
            "%s; serving it from %s until the list cache can be written (a restart "
            "without network would have no copy of it)",
            error,
            moved.directory,
        )
        self._count_error("list_cache")
        return fetched

    def _move_home(self) -> None:
        """Copies served from a temporary directory go to the list cache once it can
        be written again. The names of the files in service change, not their content."""
        moved = False
        for index, (remote, home) in enumerate(zip(self.remotes, self.homes, strict=True)):
            if remote is home:
                continue
            try:
                remote_lists.move_cache(remote, home)
            except CacheError:
                continue  # still not writable: said so at start-up
            self.remotes[index] = home
            moved = True
            logger.info("%s: now cached in %s", home.url, home.directory)
        if moved:
            self._seen = self._snapshot()
            self._in_service = _Files.now(self._seen)

    def _files(self, staged: Mapping[Path, Path]) -> list[Path]:
        files: list[Path] = []
        for path in self.paths:
            if path.exists():
                files.extend(list_files(path))
        for remote in self.remotes:
            files.append(staged.get(remote.path, remote.path))
        return files

    def _snapshot(self) -> Snapshot:
        entries: dict[str, Stat | None] = {}
        for path in [*self.paths, *(r.path for r in self.remotes)]:
            if not path.exists():
                entries[str(path)] = None
        for file in self._files({}):
            try:
                stat = file.stat()
            except OSError:
                entries[str(file)] = None
            else:
                entries[str(file)] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        return tuple(sorted(entries.items()))

    def _build(self, fetched: list[Fetched], *, in_child: bool = False) -> tuple[Matcher, _Files]:
        """Load every list (with ``fetched`` bodies in place of their cached copies) and
        build a matcher. Raises ListError (``_ListsMissing`` for vanished files), and
        BuildCancelled when ``in_child`` and the holder stops meanwhile.

        The files are recorded *before* they are read: if one changes meanwhile, the
        record is older than what was loaded and the next poll loads it again."""
        staged = {f.remote.path: f.remote.staging for f in fetched}
        snapshot = self._snapshot()
        gone = [name for name, stat in snapshot if stat is None and Path(name) not in staged]
        previous: _Files | None = getattr(self, "_in_service", None)
        if previous is not None:
            present = {name for name, _ in snapshot}
            gone += [name for name, _ in previous.snapshot if name not in present]
        if gone:
            raise _ListsMissing([f"{name}: list file is missing" for name in sorted(set(gone))])
        files = _Files.now(snapshot)
        try:
            matcher = self._matcher(self._files(staged), in_child=in_child)
        except ListError as exc:
            raise ListError([self._describe(p, staged) for p in exc.problems]) from exc
        if matcher.memo_size != self.settings.match_memo_size:
            # Not otherwise: a grown matcher shares its base's word memo (Matcher.extended).
            matcher.memo_size = self.settings.match_memo_size
        return matcher, files

    def _matcher(self, files: list[Path], *, in_child: bool) -> Matcher:
        # Lists that only gained terms grow the matcher in service (Matcher.extended).
        base: Matcher | None = getattr(self, "matcher", None)
        if in_child:
            try:
                return self.builder.build(files, self._pause, base)
            except BuildUnavailable as exc:
                self.build_fallbacks += 1
                self._count_error("list_build_fallback")
                logger.warning("building the matcher in this process: %s", exc)
        return build_here(files, base)

    def _describe(self, problem: str, staged: Mapping[Path, Path]) -> str:
        """A problem in a list fetched from a URL names the URL, not the cache file."""
        for remote in self.remotes:
            for local in (staged.get(remote.path), remote.path):
                if local is not None and problem.startswith(str(local)):
                    return remote.url + problem[len(str(local)) :]
        return problem

    def _fetch(self, remote: RemoteList) -> Fetched | None:
        return remote_lists.fetch(
            remote,
            timeout=self.settings.list_urls_timeout_seconds,
            allow_http=self.settings.list_urls_allow_http,
        )

    # --- reloading (blocking: call on a worker thread) ---------------------------

    def reload_blocking(self, reason: str, *, only_if_changed: bool = False) -> ReloadResult:
        """Reload now, with the list URLs fetched again. With ``only_if_changed``
        (file polling), the list URLs are not fetched, and files whose content is
        what is in service already (``touch``) rebuild nothing."""
        with self._lock:
            if only_if_changed:
                return self._reload(reason, [], only_if_changed=True)
            result = self._refresh(reason, reload=True)
            assert result is not None
            return result

    def _reload(
        self, reason: str, fetched: list[Fetched], *, only_if_changed: bool = False
    ) -> ReloadResult:
        if only_if_changed and not fetched:
            snapshot = self._snapshot()
            same_files = [n for n, _ in snapshot] == [n for n, _ in self._in_service.snapshot]
            if same_files and _digests(snapshot) == self._in_service.digests:
                self._seen = snapshot  # touched, not changed: nothing to rebuild
                return ReloadResult("unchanged", self.matcher.lists)
        # Polling acts on what it saw once, so a broken file is reported once, not per poll.
        self._seen = self._snapshot()
        try:
            matcher, files = self._build(fetched, in_child=True)
        except BuildCancelled:
            for item in fetched:
                remote_lists.discard(item)
            self._seen = self._in_service.snapshot  # a later start() sees the change again
            logger.info("term list reload (%s) abandoned: shutting down", reason)
            return ReloadResult("unchanged", self.matcher.lists)
        except ListError as exc:
            for item in fetched:
                remote_lists.discard(item)
                self._rejected[item.remote.url] = item.sha256
            kind = "list_missing" if isinstance(exc, _ListsMissing) else "list_invalid"
            return self._failed(reason, kind, exc.problems)
        try:
            for item in fetched:
                remote_lists.promote(item)
                self._rejected.pop(item.remote.url, None)
        except CacheError as exc:
            # Renames only; if one fails after another worked, that cached copy is
            # newer than the lists in service, and goes into service at the next
            # reload (its meta.json is renamed last, so nothing is skipped).
            for item in fetched:
                remote_lists.discard(item)
            return self._failed(reason, "list_cache", (str(exc),))
        if fetched:  # the cached copies changed under their own names
            self._seen = self._snapshot()
            files = _Files.now(self._seen)
        if matcher.grown_by is None:
            # A built matcher's first searches would pay for cold caches. A grown one
            # has its base's tables or fresh copies of them: warming it up took 5 ms
            # of this process's CPU per reload (5,000 terms), for first searches
            # 4-12 µs faster (docs/benchmarks.md).
            matcher.warm_up(self._pause)
        retired = self.matcher
        self.matcher, self._in_service = matcher, files  # the swap
        lists = matcher.lists
        logger.info(
            "term lists reloaded (%s): %d lists, %d terms (%s)",
            reason,
            len(lists),
            matcher.term_count,
            "built"
            if matcher.grown_by is None
            else f"{matcher.grown_by} added to those in service",
        )
        if self.recorder is not None:
            self.recorder.list_reload("ok", lists=lists)
        # Freed object by object, the old matcher would hold the interpreter lock
        # all along (5,000 terms: 7 ms without a request answered). Unless a
        # request under way still holds it, it is emptied in pieces here instead.
        if sys.getrefcount(retired) == 2:  # this name, and getrefcount's argument
            kept = matcher.memos  # a grown matcher keeps its base's word memo
            for memo in retired.memos:
                if not any(memo is other for other in kept):
                    memo.forget(self._pause)
            # A matcher grown from it shares most of it, and must keep it whole;
            # what only the retired one held then goes at once (5,000 terms: 1 ms).
            if matcher.grown_by is None:
                pieces.release(retired, self._pause)
        if self.settings.huge_pages and matcher.term_count >= HUGE_PAGES_MIN_TERMS:
            collapsed = back_heap_with_huge_pages()  # the new matcher is on small pages
            logger.info("after the reload: %d MiB on huge pages", collapsed >> 20)
        return ReloadResult("ok", lists)

    def _failed(self, reason: str, kind: str | None, problems: tuple[str, ...]) -> ReloadResult:
        shown = list(problems[:MAX_PROBLEMS_SHOWN])
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"… and {len(problems) - MAX_PROBLEMS_SHOWN} more")
        message = "; ".join(shown)
        logger.error(
            "term list reload failed (%s, %s); the lists in service stay: %s",
            reason,
            kind or "fetch",
            message,
        )
        if self.recorder is not None:
            self.recorder.list_reload("error", error=message)
        if kind is not None:
            self._count_error(kind)
        return ReloadResult("error", self.matcher.lists, message, kind)

    def files_changed_blocking(self) -> bool:
        """Whether polling should reload: the files differ from those in service and
        looked the same on the previous poll too."""
        snapshot = self._snapshot()
        if snapshot == self._seen:
            self._candidate = None
            return False
        if snapshot != self._candidate:
            self._candidate = snapshot  # maybe still being written; look again next poll
            return False
        self._candidate = None
        return True

    def refresh_remote_blocking(self) -> ReloadResult | None:
        """Fetch every list URL; reload if any changed. None when nothing changed."""
        with self._lock:
            return self._refresh("list URL", reload=False)

    def _refresh(self, reason: str, *, reload: bool) -> ReloadResult | None:
        """Fetch every list URL, then reload if any changed or ``reload``. A URL that
        cannot be fetched or cached keeps its copy in service, and makes the result
        an error (after the reload of the rest, if any)."""
        self._move_home()
        fetched: list[Fetched] = []
        failures: list[str] = []
        cache_failed = False
        for remote in self.remotes:
            try:
                item = self._fetch(remote)
            except FetchError as exc:
                failures.append(str(exc))
                continue
            except CacheError as exc:
                failures.append(str(exc))
                cache_failed = True
                continue
            if item is None:
                continue
            if self._rejected.get(remote.url) == item.sha256:
                remote_lists.discard(item)  # the same broken content, reported already
                continue
            fetched.append(item)
        result = self._reload(reason, fetched) if fetched or reload else None
        if failures:
            failed = self._failed(reason, "list_cache" if cache_failed else None, tuple(failures))
            return result if result is not None and result.result == "error" else failed
        return result

    # --- asyncio ---------------------------------------------------------------

    async def reload(self, reason: str = "requested") -> ReloadResult:
        """Reload now, off the event loop."""
        return await anyio.to_thread.run_sync(self.reload_blocking, reason)

    async def start(self) -> None:
        """Start polling and install the SIGHUP handler (main thread only)."""
        if self._tasks:
            return
        # On a worker thread, as reloads run: the first call imports anyio's
        # thread machinery on the event loop (17-24 ms without an answer), which
        # belongs here, before any request, not in the first reload.
        await anyio.to_thread.run_sync(self.builder.open)
        self._pause = pieces.hand_over_to(asyncio.get_running_loop())
        if self.settings.reload_poll_seconds > 0:
            self._spawn(self._poll_files(self.settings.reload_poll_seconds))
        if self.remotes and self.settings.list_urls_poll_seconds > 0:
            self._spawn(self._poll_remote(self.settings.list_urls_poll_seconds))
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is not None and threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            try:
                loop.add_signal_handler(sighup, self._on_sighup)
            except (NotImplementedError, RuntimeError, ValueError):
                logger.debug("cannot install a SIGHUP handler in this event loop")
            else:
                self._signal_loop = loop

    async def stop(self) -> None:
        self.builder.close()  # first: the tasks below may be waiting for a child
        self._pause = pieces.hand_over
        if self._signal_loop is not None:
            with contextlib.suppress(Exception):
                self._signal_loop.remove_signal_handler(signal.SIGHUP)
            self._signal_loop = None
        tasks = list(self._tasks)  # their done callbacks shrink the set
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_sighup(self) -> None:
        logger.info("SIGHUP: reloading term lists")
        self._spawn(self.reload("SIGHUP"))

    async def _poll_files(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                if await anyio.to_thread.run_sync(self.files_changed_blocking):
                    await anyio.to_thread.run_sync(
                        lambda: self.reload_blocking("file change", only_if_changed=True)
                    )
            except Exception:  # polling must outlive any surprise; the next poll retries
                logger.exception("polling the list files failed")

    async def _poll_remote(self, interval: float) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self.refresh_remote_blocking)
            except Exception:
                logger.exception("refreshing the list URLs failed")
            await asyncio.sleep(interval)


def _digests(snapshot: Snapshot) -> dict[str, str]:
    digests: dict[str, str] = {}
    for name, stat in snapshot:
        if stat is None:
            continue
        try:
            digests[name] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
        except OSError:
            continue
    return digests
