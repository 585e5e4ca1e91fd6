"""The embedded aggregate store: hourly count buckets in one SQLite file.

Counts arrive already aggregated (the :class:`~deterrence.metrics.Recorder` keeps
them in memory and flushes every ``flush_interval_seconds``), keyed only by an
hour and the configured label values of a metric — never by anything taken from
a request. Several worker processes may write to the same file: the database runs
in WAL mode, every write is one short ``BEGIN IMMEDIATE`` transaction that adds to
existing buckets (``value = value + excluded.value``), and ``busy_timeout`` makes a
writer wait for another instead of failing at once.

Besides the counts the store keeps the label *domain* (every label combination the
configuration defines, so reports can show zeros and add noise to every cell, not
only to the ones that happened to occur) and the status of the loaded term lists.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

FILENAME = "deterrence.sqlite3"
SCHEMA_VERSION = "1"
MAX_ERROR_CHARS = 500
KEPT_RELOAD_EVENTS = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counts (
    hour   TEXT    NOT NULL,
    metric TEXT    NOT NULL,
    labels TEXT    NOT NULL,
    value  INTEGER NOT NULL,
    PRIMARY KEY (hour, metric, labels)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domain (
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    PRIMARY KEY (metric, labels)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (
    list_id   TEXT PRIMARY KEY,
    category  TEXT NOT NULL,
    action    TEXT NOT NULL,
    version   TEXT,
    terms     INTEGER NOT NULL,
    loaded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS list_reloads (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL,
    result TEXT NOT NULL,
    error  TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

Labels = tuple[tuple[str, str], ...]
"""Label name/value pairs, sorted by name: hashable and canonical."""


def hour_key(moment: datetime) -> str:
    """The bucket a moment falls in, as sortable ISO text (``2026-11-01T13:00:00Z``)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:00:00Z")


def hour_key_from_epoch(epoch_hour: int) -> str:
    return hour_key(datetime.fromtimestamp(epoch_hour * 3600, UTC))


def parse_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def encode_labels(labels: Labels | Mapping[str, str]) -> str:
    items = labels.items() if isinstance(labels, Mapping) else labels
    return json.dumps(dict(sorted(items)), separators=(",", ":"), ensure_ascii=False)


def decode_labels(text: str) -> dict[str, str]:
    decoded = json.loads(text)
    return {str(k): str(v) for k, v in decoded.items()}


@dataclass(frozen=True)
class CountRow:
    hour: datetime
    metric: str
    labels: Mapping[str, str]
    value: int


@dataclass(frozen=True)
class ListState:
    """One loaded term list, as the dashboard shows it."""

    list_id: str
    category: str
    action: str
    version: str | None
    terms: int
    loaded_at: datetime


@dataclass(frozen=True)
class ReloadEvent:
    at: datetime
    result: str
    error: str | None = None


@dataclass(frozen=True)
class ListStatus:
    lists: tuple[ListState, ...]
    reloads: tuple[ReloadEvent, ...]
    """Most recent first."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Access to ``data_dir / "deterrence.sqlite3"``.

    Every call opens its own short-lived connection, so one Store may be used
    from any thread, and from a process forked after it was created. Writing
    methods raise :class:`sqlite3.Error` or :class:`OSError`; the Recorder
    catches them, keeps its counts and tries again at the next flush.
    """

    def __init__(self, data_dir: Path, *, busy_timeout: float = 5.0) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / FILENAME
        self.busy_timeout = busy_timeout
        self._initialised = False

    # --- connections ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        if self._initialised:
            return
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                self._create(conn)
                break
            except sqlite3.OperationalError as error:
                # Processes that create the file at once can each hold a read lock and
                # want to write: SQLite then answers one "locked" at once rather than
                # wait in its busy handler, which would deadlock. It succeeds later.
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        self._initialised = True

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        # journal_mode is persistent in the file; switching needs no other writer.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            self._initialise(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                # The file may have been removed or replaced: check the schema next time.
                self._initialised = False
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            yield None
            return
        with closing(self._connect()) as conn:
            yield conn

    # --- writing -------------------------------------------------------------

    def write(
        self,
        counts: Mapping[tuple[str, str, str], int],
        *,
        domain: Iterable[tuple[str, str]] = (),
        lists: Sequence[ListState] | None = None,
        reloads: Sequence[ReloadEvent] = (),
    ) -> None:
        """Add ``counts`` ({(hour, metric, encoded labels): n}) to their buckets,
        record label ``domain`` rows, replace the list table with ``lists`` when
        given and append ``reloads`` — all in one transaction."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO counts (hour, metric, labels, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (hour, metric, labels) DO UPDATE SET value = value + excluded.value",
                [(hour, metric, labels, n) for (hour, metric, labels), n in counts.items() if n],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO domain (metric, labels) VALUES (?, ?)", list(domain)
            )
            if lists is not None:
                conn.execute("DELETE FROM lists")
                conn.executemany(
                    "INSERT INTO lists (list_id, category, action, version, terms, loaded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (s.list_id, s.category, s.action, s.version, s.terms, _iso(s.loaded_at))
                        for s in lists
                    ],
                )
            if reloads:
                conn.executemany(
                    "INSERT INTO list_reloads (at, result, error) VALUES (?, ?, ?)",
                    [
                        (_iso(e.at), e.result, e.error[:MAX_ERROR_CHARS] if e.error else None)
                        for e in reloads
                    ],
                )
                conn.execute(
                    "DELETE FROM list_reloads WHERE id <= (SELECT max(id) FROM list_reloads) - ?",
                    (KEPT_RELOAD_EVENTS,),
                )

    def purge(self, before: datetime) -> int:
        """Delete buckets older than ``before``; returns how many were deleted."""
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM counts WHERE hour < ?", (hour_key(before),))
            return cursor.rowcount

    def purge_retention(self, retention_days: int, *, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        return self.purge(now - timedelta(days=retention_days))

    # --- reading -------------------------------------------------------------

    def counts(
        self,
        metric: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[CountRow]:
        """Buckets with ``start <= hour < end``, oldest first."""
        query = "SELECT hour, metric, labels, value FROM counts WHERE 1 = 1"
        params: list[str] = []
        if metric is not None:
            query += " AND metric = ?"
            params.append(metric)
        if start is not None:
            query += " AND hour >= ?"
            params.append(hour_key(start))
        if end is not None:
            query += " AND hour < ?"
            params.append(_iso(end))
        query += " ORDER BY hour, metric, labels"
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(query, params).fetchall()
        return [
            CountRow(parse_utc(hour), name, decode_labels(labels), int(value))
            for hour, name, labels, value in rows
        ]

    def domain(self, metric: str) -> list[dict[str, str]]:
        """Every label combination the configuration has defined for ``metric``."""
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT labels FROM domain WHERE metric = ? ORDER BY labels", (metric,)
            ).fetchall()
        return [decode_labels(labels) for (labels,) in rows]

    def list_status(self, *, reloads: int = 10) -> ListStatus:
        with self._read() as conn:
            if conn is None:
                return ListStatus((), ())
            list_rows = conn.execute(
                "SELECT list_id, category, action, version, terms, loaded_at "
                "FROM lists ORDER BY list_id"
            ).fetchall()
            reload_rows = conn.execute(
                "SELECT at, result, error FROM list_reloads ORDER BY id DESC LIMIT ?", (reloads,)
            ).fetchall()
        return ListStatus(
            tuple(
                ListState(lid, cat, act, ver, int(terms), parse_utc(at))
                for lid, cat, act, ver, terms, at in list_rows
            ),
            tuple(ReloadEvent(parse_utc(at), result, error) for at, result, error in reload_rows),
        )
