"""The SQLite aggregate store, driven through the Recorder as the app drives it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from term_lists import demo_list

from deterrence.metrics import ERRORS, INSPECTED, INTERVENTIONS, Recorder
from deterrence.settings import Settings
from deterrence.store import FILENAME, ReloadEvent, Store, encode_labels, hour_key

NOON = datetime(2026, 11, 1, 12, 30, tzinfo=UTC).timestamp()


LISTS = [demo_list("demo-zorblax", "generic", "block", ("zorblax", "quendrific"), "2026-11-01")]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_recorder(data_dir: Path, clock: Clock | None = None, **overrides: object) -> Recorder:
    settings = Settings(data_dir=data_dir, search_paths=["/search"], **overrides)  # type: ignore[arg-type]
    return Recorder(
        settings,
        lists=LISTS,
        variants=["control", "harm"],
        locales=["en"],
        services=["helpline"],
        clock=clock or Clock(NOON),
    )


def total(store: Store, metric: str, **labels: str) -> int:
    return sum(
        row.value
        for row in store.counts(metric)
        if all(row.labels.get(k) == v for k, v in labels.items())
    )


def test_flush_adds_to_hourly_buckets_and_nothing_is_written_per_request(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    for _ in range(5):
        recorder.inspected("/search")
    recorder.intervention(
        list_id="demo-zorblax", category="generic", action="block", variant="harm"
    )
    assert not (tmp_path / FILENAME).exists(), "recording must stay in memory"

    assert recorder.flush()
    store = Store(tmp_path)
    rows = store.counts(INSPECTED)
    assert [(r.hour, r.labels, r.value) for r in rows] == [
        (datetime(2026, 11, 1, 12, tzinfo=UTC), {"route": "/search"}, 5)
    ]
    # A second flush adds (UPSERT value = value + excluded.value), never replaces.
    for _ in range(3):
        recorder.inspected("/search")
    assert recorder.flush()
    assert total(store, INSPECTED) == 8
    assert total(store, INTERVENTIONS, list="demo-zorblax", variant="harm") == 1
    # Nothing pending after a successful flush: flushing again changes nothing.
    assert recorder.flush()
    assert total(store, INSPECTED) == 8


def test_buckets_are_keyed_by_hour(tmp_path: Path) -> None:
    clock = Clock(NOON)
    recorder = make_recorder(tmp_path, clock)
    recorder.inspected("/search")
    clock.now += 3600
    recorder.inspected("/search")
    recorder.inspected("/search")
    recorder.flush()
    rows = Store(tmp_path).counts(INSPECTED)
    assert [(r.hour.hour, r.value) for r in rows] == [(12, 1), (13, 2)]
    start = datetime(2026, 11, 1, 13, tzinfo=UTC)
    assert [r.value for r in Store(tmp_path).counts(INSPECTED, start=start)] == [2]
    assert [r.value for r in Store(tmp_path).counts(INSPECTED, end=start)] == [1]


def test_only_configured_labels_are_stored(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    recorder.inspected("/search?q=mirveltok")  # a caller bug: request data as a route
    recorder.help_click(service="https://elsewhere.example/", variant="control")
    recorder.flush()
    store = Store(tmp_path)
    labels = {r.labels.get("route") for r in store.counts(INSPECTED)}
    assert labels == {"other"}
    with closing(sqlite3.connect(store.path)) as conn:
        dump = "\n".join(conn.iterdump())
    assert "mirveltok" not in dump
    assert "elsewhere" not in dump


def test_counts_survive_a_restart(tmp_path: Path) -> None:
    first = make_recorder(tmp_path)
    first.page_view(variant="harm", locale="en")
    first.flush()
    del first
    second = make_recorder(tmp_path)
    second.page_view(variant="harm", locale="en")
    second.flush()
    assert total(Store(tmp_path), "deterrence_page_views_total", variant="harm") == 2


def test_start_and_stop_flush_periodically_and_at_shutdown(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path, flush_interval_seconds=0.05)

    async def serve() -> None:
        await recorder.start()
        recorder.inspected("/search")
        await asyncio.sleep(0.3)
        assert total(Store(tmp_path), INSPECTED) == 1, "periodic flush"
        recorder.inspected("/search")
        await recorder.stop()

    asyncio.run(serve())
    assert total(Store(tmp_path), INSPECTED) == 2, "final flush at stop"


def test_domain_holds_every_configured_combination(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    recorder.flush()
    store = Store(tmp_path)
    domain = store.domain(INTERVENTIONS)
    expected = {"list": "demo-zorblax", "category": "generic", "action": "block", "variant": "harm"}
    assert expected in domain
    assert all("other" not in d.values() for d in domain)
    assert len(store.domain("deterrence_page_views_total")) == 2  # 2 variants × 1 locale


def test_list_status_and_reload_events(tmp_path: Path) -> None:
    clock = Clock(NOON)
    recorder = make_recorder(tmp_path, clock)
    recorder.flush()
    status = Store(tmp_path).list_status()
    assert [(s.list_id, s.version, s.terms) for s in status.lists] == [
        ("demo-zorblax", "2026-11-01", 2)
    ]
    clock.now += 60
    recorder.list_reload("error", error="keyword_lists/broken.toml:3: unknown key 'colour'")
    newer = demo_list("demo-mirvel", "generic", "warn", ("mirveltok",), "2")
    clock.now += 60
    recorder.list_reload("ok", lists=[*LISTS, newer])
    recorder.flush()
    status = Store(tmp_path).list_status()
    assert [s.list_id for s in status.lists] == ["demo-mirvel", "demo-zorblax"]
    assert [(e.result, e.error) for e in status.reloads] == [
        ("ok", None),
        ("error", "keyword_lists/broken.toml:3: unknown key 'colour'"),
    ]
    assert total(Store(tmp_path), "deterrence_list_reloads_total", result="error") == 1


def test_retention_purges_old_buckets(tmp_path: Path) -> None:
    clock = Clock(NOON)
    recorder = make_recorder(tmp_path, clock, retention_days=7)
    recorder.inspected("/search")
    recorder.flush()
    clock.now += 6 * 86400
    recorder._last_purge = 0  # purge runs at most hourly; make this flush do it
    recorder.inspected("/search")
    recorder.flush()
    assert total(Store(tmp_path), INSPECTED) == 2
    clock.now += 2 * 86400
    recorder._last_purge = 0
    recorder.inspected("/search")
    recorder.flush()
    hours = [r.hour for r in Store(tmp_path).counts(INSPECTED)]
    assert datetime.fromtimestamp(NOON, UTC).replace(minute=0) not in hours
    assert total(Store(tmp_path), INSPECTED) == 2
    store = Store(tmp_path)
    assert store.purge(datetime.now(UTC) + timedelta(days=3650)) == 2
    assert store.counts(INSPECTED) == []


WRITER = """
import sys
import time
from pathlib import Path
from deterrence.store import Store, encode_labels
store = Store(Path(sys.argv[1]), busy_timeout=30)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all create the file at once
for i in range(40):
    store.write({
        ("2026-11-01T12:00:00Z", "deterrence_requests_inspected_total",
         encode_labels({"route": "/search"})): 1,
        ("2026-11-01T12:00:00Z", "deterrence_errors_total",
         encode_labels({"kind": "decode"})): 2,
    }, domain=[("deterrence_errors_total", encode_labels({"kind": "decode"}))])
"""

WRITERS = 8


def test_concurrent_writers_in_several_processes(tmp_path: Path) -> None:
    """Eight processes create the file and write to it at once. Before the store
    tried again, about one writer in fifty failed with "database is locked"."""
    start = time.time() + 1.0
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(start)], stderr=subprocess.PIPE
        )
        for _ in range(WRITERS)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    store = Store(tmp_path)
    assert total(store, INSPECTED) == WRITERS * 40
    assert total(store, ERRORS, kind="decode") == WRITERS * 40 * 2
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_locked_database_keeps_counts_for_the_next_flush(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    recorder.inspected("/search")
    assert recorder.flush()
    assert recorder.store is not None
    recorder.store.busy_timeout = 0.2

    blocker = sqlite3.connect(recorder.store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        recorder.inspected("/search")
        recorder.inspected("/search")
        assert not recorder.flush()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert total(Store(tmp_path), INSPECTED) == 1
    assert recorder.flush()
    assert total(Store(tmp_path), INSPECTED) == 3
    # The failure itself is counted, in Prometheus and then in the store.
    assert _sample(recorder, ERRORS, kind="store_write") == 1
    assert total(Store(tmp_path), ERRORS, kind="store_write") == 1


def test_a_short_lock_is_waited_for(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    assert recorder.flush()
    assert recorder.store is not None
    blocker = sqlite3.connect(recorder.store.path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.3, lambda: (blocker.execute("ROLLBACK"), blocker.close()))
    release.start()
    recorder.inspected("/search")
    started = time.monotonic()
    assert recorder.flush(), "busy_timeout should wait for the other writer"
    assert time.monotonic() - started >= 0.2
    release.join()


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` read-only for real: chmod for ordinary users; root
    ignores permissions, so for root mark it immutable (ext4 ``chattr +i``)."""
    as_root = os.geteuid() == 0
    if as_root:
        result = subprocess.run(["chattr", "+i", str(directory)], capture_output=True)
        if result.returncode != 0:
            if os.environ.get("CI"):
                pytest.fail(f"cannot make a directory read-only: {result.stderr.decode()}")
            pytest.skip(f"cannot make a directory read-only here: {result.stderr.decode()}")
    else:
        directory.chmod(0o555)
    try:
        probe = directory / "probe"
        with pytest.raises(OSError):
            probe.touch()
        yield
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        else:
            directory.chmod(0o755)


def test_read_only_data_dir_is_survived(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    recorder = make_recorder(data_dir)
    recorder.inspected("/search")
    assert recorder.flush()
    with read_only(data_dir):
        recorder.inspected("/search")
        recorder.page_view(variant="control", locale="en")
        assert not recorder.flush()
        assert not recorder.flush()
        assert _sample(recorder, ERRORS, kind="store_write") == 2
    assert recorder.flush()
    store = Store(data_dir)
    assert total(store, INSPECTED) == 2
    assert total(store, "deterrence_page_views_total") == 1
    assert total(store, ERRORS, kind="store_write") == 2


def test_data_dir_that_cannot_be_created_is_survived(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    recorder = make_recorder(parent / "data")
    recorder.inspected("/search")
    with read_only(parent):
        assert not recorder.flush()
    assert recorder.flush()
    assert total(Store(parent / "data"), INSPECTED) == 1


def test_reading_a_store_that_does_not_exist_is_empty(tmp_path: Path) -> None:
    store = Store(tmp_path / "nothing")
    assert store.counts() == []
    assert store.domain(INSPECTED) == []
    assert store.list_status().lists == ()
    assert not (tmp_path / "nothing").exists()


def test_reload_error_text_is_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write({}, reloads=[ReloadEvent(datetime.now(UTC), "error", "x" * 5000)])
    (event,) = store.list_status().reloads
    assert event.error is not None and len(event.error) == 500


def test_hour_key_and_label_encoding_are_canonical() -> None:
    moment = datetime(2026, 11, 1, 12, 59, 59, tzinfo=UTC)
    assert hour_key(moment) == "2026-11-01T12:00:00Z"
    assert encode_labels({"b": "2", "a": "1"}) == encode_labels((("a", "1"), ("b", "2")))


def _sample(recorder: Recorder, metric: str, **labels: str) -> float:
    value = recorder.registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value
