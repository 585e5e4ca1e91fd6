"""Faults, caused for real wherever that is possible, on real servers: each is answered
the documented way (docs/operations.md), counted in ``deterrence_errors_total{kind}``,
and the server keeps answering.

- the matcher raises (a Matcher subclass: no real input makes the real one raise);
- decoding the request raises (a mock: deterrence.extract never raises by design);
- the SQLite store is locked by another connection, and its disk is full (a tmpfs);
- the Prometheus multiprocess directory is read-only (a read-only tmpfs) at start-up,
  or while serving under gunicorn --preload, or holds an entry that cannot be read;
- the upstream of the proxy resets the connection, before and during its answer.

A vanished list file is in tests/test_reload.py (it is a reload fault), a list cache
that cannot be written in tests/test_list_urls.py. Mounting needs root
(CAP_SYS_ADMIN): without it those tests skip locally and fail in CI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from gateway_support import raw_upstream
from live_uvicorn import free_port, gunicorn_command, metric, serve, wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tmpfs_support import fill, tmpfs

from deterrence import DeterrenceMiddleware, extract
from deterrence.matcher import Match, Matcher
from deterrence.metrics import ERRORS
from deterrence.proxy import ProxyApp
from deterrence.store import FILENAME, Store

REPO = Path(__file__).resolve().parent.parent

BLOCK_STATUS = 451
CANARY = "cnryfaultprobe"


def app() -> Starlette:
    async def search(request: Request) -> PlainTextResponse:
        return PlainTextResponse("results")

    return Starlette(routes=[Route("/search", search)])


def search(base: str, query: str) -> httpx2.Response:
    return httpx2.get(f"{base}/search", params={"q": query}, timeout=10)


# --- the matcher raises -------------------------------------------------------------------


class ExplodingMatcher(Matcher):
    """Raises with the query in its message, as a careless bug would."""

    def match(self, query: str) -> Match | None:
        raise RuntimeError(f"exploded while matching {query!r}")


@pytest.mark.parametrize(("on_error", "expected"), [("open", 200), ("closed", BLOCK_STATUS)])
def test_a_matcher_exception_follows_on_error(
    on_error: str, expected: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = DeterrenceMiddleware(
        app(), data_dir=tmp_path, on_error=on_error, block_status=BLOCK_STATUS
    )
    middleware.matcher_holder.matcher = ExplodingMatcher(middleware.matcher.lists)
    with serve(middleware) as base:
        responses = [search(base, f"weather {CANARY}") for _ in range(3)]
        assert [r.status_code for r in responses] == [expected] * 3
        if on_error == "open":
            assert responses[0].text == "results"
        assert metric(base, "deterrence_errors_total", kind="match_exception") == 3
        # A reload puts a working matcher back.
        middleware.matcher_holder.reload_blocking("test")
        assert search(base, "zorblax").status_code == BLOCK_STATUS
        assert search(base, "weather").status_code == 200
    assert "matching failed with RuntimeError" in caplog.text
    assert CANARY not in caplog.text  # the exception's message quoted the query


# --- decoding the request raises -----------------------------------------------------------


@pytest.mark.parametrize(("on_error", "expected"), [("open", 200), ("closed", BLOCK_STATUS)])
def test_a_decoding_exception_follows_on_error(
    on_error: str,
    expected: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """deterrence.extract never raises by design, so no request can make it: a mock
    stands in for the bug (with the query in its message, as a careless one would)."""

    def broken(raw: bytes, *args: object, **kwargs: object) -> list[str]:
        raise UnicodeDecodeError("utf-8", raw, 0, 1, f"cannot decode {CANARY}")

    middleware = DeterrenceMiddleware(
        app(), data_dir=tmp_path, on_error=on_error, block_status=BLOCK_STATUS
    )
    with serve(middleware) as base:
        monkeypatch.setattr(extract, "form_values", broken)
        responses = [search(base, f"weather {CANARY} {n}") for n in range(3)]
        assert [r.status_code for r in responses] == [expected] * 3
        if on_error == "open":
            assert responses[0].text == "results"
        else:  # the warning page, not the site
            assert responses[0].headers["content-type"].startswith("text/html")
            assert responses[0].text != "results" and CANARY not in responses[0].text
        assert metric(base, "deterrence_errors_total", kind="decode") == 3
        monkeypatch.undo()
        assert search(base, "zorblax").status_code == BLOCK_STATUS
        assert search(base, "weather").status_code == 200
    assert "decoding the request failed with UnicodeDecodeError" in caplog.text
    assert CANARY not in caplog.text


# --- the SQLite store ---------------------------------------------------------------------


def stored_inspections(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / FILENAME)) as conn:
        try:
            (total,) = conn.execute(
                "SELECT COALESCE(SUM(value), 0) FROM counts "
                "WHERE metric = 'deterrence_requests_inspected_total'"
            ).fetchone()
        except sqlite3.OperationalError:  # not created yet
            return 0
    return int(total)


def test_a_locked_store_delays_counts_but_no_request(tmp_path: Path) -> None:
    middleware = DeterrenceMiddleware(
        app(), data_dir=tmp_path, flush_interval_seconds=0.2, block_status=BLOCK_STATUS
    )
    with serve(middleware) as base:
        wait_for(lambda: (tmp_path / FILENAME).exists())
        locker = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            for _ in range(20):
                started = time.monotonic()
                assert search(base, "weather").status_code == 200
                assert time.monotonic() - started < 1.0  # flushing happens off the loop
            # The store's busy timeout (5 s) runs out: the flush fails and is counted.
            wait_for(lambda: metric(base, "deterrence_errors_total", kind="store_write") >= 1)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # Nothing was lost: the counts stayed in memory and the next flush wrote them.
        wait_for(lambda: stored_inspections(tmp_path) == 20)


def test_a_full_disk_delays_counts_but_no_request(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "data", "size=256k") as data_dir:
        filler = fill(data_dir)
        middleware = DeterrenceMiddleware(
            app(), data_dir=data_dir, flush_interval_seconds=0.2, block_status=BLOCK_STATUS
        )
        with serve(middleware) as base:  # the first flush fails at start-up already
            assert [search(base, "weather").status_code for _ in range(10)] == [200] * 10
            assert search(base, "zorblax").status_code == BLOCK_STATUS
            wait_for(lambda: metric(base, "deterrence_errors_total", kind="store_write") >= 2)
            filler.unlink()  # room again
            wait_for(lambda: stored_inspections(data_dir) == 11)


# --- the Prometheus multiprocess directory ------------------------------------------------


@contextlib.contextmanager
def demo(tmp_path: Path, multiproc_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "DETERRENCE_DATA_DIR": str(tmp_path / "data"),
        "DETERRENCE_BLOCK_STATUS": str(BLOCK_STATUS),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "deterrence", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=30)


def listening(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, process.communicate()[0].decode()
    try:
        return search(base, "weather").status_code == 200
    except httpx2.TransportError:
        return False


def test_a_read_only_multiprocess_dir_stops_the_start_with_its_name(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "metrics", "size=64k", "ro") as multiproc_dir:
        with demo(tmp_path, multiproc_dir) as (_, process):
            output = process.communicate(timeout=60)[0].decode()
        assert process.returncode not in (0, None)
        assert str(multiproc_dir) in output
        assert "Read-only file system" in output


def test_an_unreadable_multiprocess_dir_fails_metrics_not_searches(tmp_path: Path) -> None:
    multiproc_dir = tmp_path / "metrics"
    multiproc_dir.mkdir()
    with demo(tmp_path, multiproc_dir) as (base, process):
        wait_for(lambda: listening(base, process), timeout=30)
        assert httpx2.get(f"{base}/metrics").status_code == 200
        broken = multiproc_dir / "counter_999999.db"
        broken.mkdir()  # a *.db entry that cannot be read (root reads any file)
        response = httpx2.get(f"{base}/metrics")
        assert response.status_code == 500
        assert "Traceback" not in response.text
        assert search(base, "weather").status_code == 200
        assert search(base, "zorblax").status_code == BLOCK_STATUS
        broken.rmdir()
        # A corrupt file (a used-size field pointing past its end) fails the same way.
        corrupt = multiproc_dir / "counter_999998.db"
        corrupt.write_bytes(struct.pack("i", 64) + b"\0" * 4 + struct.pack("i", 1000) + b"x" * 60)
        assert httpx2.get(f"{base}/metrics").status_code == 500
        assert search(base, "weather").status_code == 200
        corrupt.unlink()
        assert metric(base, "deterrence_errors_total", kind="multiprocess_dir") == 2
        assert metric(base, "deterrence_requests_inspected_total", route="/search") >= 3


PRELOADED_APP = """
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from deterrence import DeterrenceMiddleware, extract


async def search(request):
    return PlainTextResponse(str(os.getpid()))


app = DeterrenceMiddleware(
    Starlette(routes=[Route("/search", search)]),
    data_dir=Path(os.environ["TEST_DATA_DIR"]),
    block_status=451,
)
"""


@contextlib.contextmanager
def preloaded_gunicorn(
    tmp_path: Path, multiproc_dir: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn --preload, two uvicorn workers: the app (and its Recorder) is built
    in the master, and each worker opens its metric files at its first update.
    The log is ``tmp_path / "gunicorn.log"``."""
    (tmp_path / "preloaded_app.py").write_text(PRELOADED_APP)
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "TEST_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
    }
    env.pop("DETERRENCE_METRICS_PORT", None)
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            gunicorn_command("preloaded_app:app", "--preload", "--chdir", str(tmp_path)),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        answered: set[int] = set()

        def both_answered() -> bool:  # so both have opened their metric files
            assert process.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx2.TransportError):
                answered.add(int(search(base, "weather").text))
            return len(answered) == 2 and answered == worker_pids(process.pid)

        wait_for(both_answered, timeout=30)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def worker_pids(master: int) -> set[int]:
    return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def test_a_multiprocess_dir_unwritable_while_serving_loses_metrics_not_searches(
    tmp_path: Path,
) -> None:
    """A worker forked after the directory became unwritable cannot open its metric
    files (a read-only tmpfs mounted over it: a remount would be refused while the
    workers hold their files open). Its searches are answered as usual; the failure
    is counted in the store, and logged once."""
    with (
        tmpfs(tmp_path / "metrics", "size=1m") as multiproc_dir,
        preloaded_gunicorn(tmp_path, multiproc_dir) as (base, process),
    ):
        with tmpfs(multiproc_dir, "size=64k", "ro"):
            before = worker_pids(process.pid)
            os.kill(min(before), signal.SIGTERM)  # gunicorn forks a replacement
            wait_for(lambda: len(worker_pids(process.pid) - before) == 1, timeout=30)
            wait_for(lambda: len(worker_pids(process.pid)) == 2, timeout=30)
            (replacement,) = worker_pids(process.pid) - before
            served: set[int] = set()
            for _ in range(40):  # a new connection each: both workers get some
                response = search(base, "weather")
                assert response.status_code == 200, response.text
                served.add(int(response.text))
                assert search(base, "zorblax").status_code == BLOCK_STATUS
            assert replacement in served
        process.terminate()  # every worker flushes its counts to the store as it stops
        process.wait(timeout=30)
    log = (tmp_path / "gunicorn.log").read_text()
    assert log.count("cannot write Prometheus metrics to") == 1, log
    assert "Traceback" not in log
    rows = Store(tmp_path / "data").counts(ERRORS)
    assert sum(r.value for r in rows if r.labels.get("kind") == "multiprocess_dir") == 1
    assert stored_inspections(tmp_path / "data") >= 81  # the replacement's counts too


# --- the proxy's upstream resets ---------------------------------------------------------


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_upstream_resets_are_502_pages_and_counted(on_error: str, tmp_path: Path) -> None:
    options: dict[str, Any] = {"data_dir": tmp_path, "on_error": on_error}
    with raw_upstream("reset") as before, raw_upstream("reset-mid-body") as during:
        proxies = [ProxyApp(before), ProxyApp(during)]
        middlewares = [
            DeterrenceMiddleware(p, block_status=BLOCK_STATUS, **options) for p in proxies
        ]
        for proxy, middleware in zip(proxies, middlewares, strict=True):
            proxy.recorder = middleware.recorder
        with serve(middlewares[0]) as reset_before, serve(middlewares[1]) as reset_during:
            # A search that passes inspection meets the reset: a 502 page, whatever on_error.
            response = search(reset_before, f"weather {CANARY}")
            assert response.status_code == 502 and CANARY not in response.text
            assert search(reset_before, "zorblax").status_code == BLOCK_STATUS
            with pytest.raises(httpx2.HTTPError):  # an incomplete body, never a whole one
                search(reset_during, "weather")
            for base in (reset_before, reset_during):
                wait_for(lambda: resets_counted(base) == 1)  # noqa: B023 (called at once)
                assert search(base, "zorblax").status_code == BLOCK_STATUS  # still serving


def resets_counted(base: str) -> float:
    return metric(base, "deterrence_errors_total", kind="upstream_reset")


def test_a_deleted_store_file_is_created_again(tmp_path: Path) -> None:
    """Someone removes (or rotates) the SQLite file while the server runs."""
    middleware = DeterrenceMiddleware(app(), data_dir=tmp_path, flush_interval_seconds=0.1)
    with serve(middleware) as base:
        search(base, "weather")
        wait_for(lambda: stored_inspections(tmp_path) == 1)
        for leftover in tmp_path.glob(FILENAME + "*"):
            leftover.unlink()
        search(base, "weather")
        search(base, "weather")
        wait_for(lambda: stored_inspections(tmp_path) == 2)
        assert metric(base, "deterrence_errors_total", kind="store_write") <= 1
