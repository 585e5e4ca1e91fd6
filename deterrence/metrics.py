"""Aggregate-only measurement: Prometheus metrics and the hourly SQLite buckets.

One :class:`Recorder` per app. Its methods are what the middleware, the warning
pages and the list loader call; each is a dictionary lookup, a counter increment
and an in-memory addition, so the request path never touches the disk.

Label values come only from configuration (DESIGN §5): the search path patterns,
the loaded lists, the message variants, locales and help services. Every label
combination the configuration defines is created at zero when the Recorder is
built, so dashboards see a series from the start, and a value that was not
configured is recorded as ``"other"`` — request data can never create a series.

Multiprocess servers (gunicorn with uvicorn workers): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the server starts and
use ``deploy/gunicorn.conf.py``; every worker then writes its metrics to files in
that directory and the ``/metrics`` route of any worker reports the sum. The
SQLite store needs nothing special: every worker adds its own counts to the
shared buckets.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import logging
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product
from pathlib import Path
from typing import Any, Literal, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder, make_wsgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import Receive, Scope, Send

from deterrence.asgi import acknowledge_lifespan
from deterrence.headers import PLAIN_HEADERS, raw_headers
from deterrence.settings import Settings
from deterrence.store import (
    ListState,
    ReloadEvent,
    Store,
    encode_labels,
    hour_key_from_epoch,
)

logger = logging.getLogger("deterrence.metrics")

ERROR_KINDS = (
    "match_exception",
    "decode",
    "body_too_large",
    "query_too_long",
    "store_write",
    "multiprocess_dir",
    "upstream_connect",
    "upstream_timeout",
    "upstream_reset",
    "list_missing",
    "list_invalid",
    "list_build_fallback",
    "list_cache",
    "page_render",
)
ACTIONS = ("block", "warn", "count")
RELOAD_RESULTS = ("ok", "error")
OTHER = "other"
"""Recorded instead of any label value the configuration does not define."""
NO_VARIANT = "none"
"""Variant label of an intervention that showed no message (action ``count``)."""

INSPECTED = "deterrence_requests_inspected_total"
INTERVENTIONS = "deterrence_interventions_total"
PAGE_VIEWS = "deterrence_page_views_total"
HELP_CLICKS = "deterrence_help_clicks_total"
MATCH_DURATION = "deterrence_match_duration_seconds"
LIST_TERMS = "deterrence_list_terms"
LIST_RELOADS = "deterrence_list_reloads_total"
ERRORS = "deterrence_errors_total"

STORED_METRICS = (INSPECTED, INTERVENTIONS, PAGE_VIEWS, HELP_CLICKS, LIST_RELOADS, ERRORS)
"""Counters that are also kept in the SQLite buckets."""

MATCH_DURATION_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
"""10 µs … 1 s: the matcher's target is p99 ≤ 250 µs, so the resolution is there."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SECONDS_PER_HOUR = 3600


class ListInfo(Protocol):
    """What the Recorder needs of a loaded term list (``deterrence.lists.TermList``)."""

    @property
    def id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def terms(self) -> Sized: ...


def multiprocess_dir() -> Path | None:
    """The multiprocess directory, if prometheus-client runs in multiprocess mode.

    prometheus-client decides at import time; an environment variable set later
    has no effect, so both must agree.
    """
    configured = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if not configured:
        return None
    if values.ValueClass is values.MutexValue:
        logger.warning(
            "%s was set after prometheus_client was imported; metrics stay per process",
            MULTIPROC_ENV,
        )
        return None
    return Path(configured)


@dataclass
class _Family:
    """A counter and the allowed values of each of its labels."""

    name: str
    metric: Counter
    label_names: tuple[str, ...]
    allowed: tuple[frozenset[str], ...]
    children: dict[tuple[str, ...], Any]
    resolved: dict[tuple[str, ...], tuple[tuple[str, ...], Any]] = field(default_factory=dict)

    def key(self, raw: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            value if value in allowed else OTHER
            for value, allowed in zip(raw, self.allowed, strict=True)
        )

    def resolve(self, raw: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
        """The label key and the Prometheus child for ``raw`` label values,
        remembered for values that are allowed: the per-request path does one
        dict lookup. Values outside the configuration are never remembered,
        so nothing request-made accumulates here."""
        resolved = self.resolved.get(raw)
        if resolved is None:
            key = self.key(raw)
            resolved = (key, self.child(key))
            if OTHER not in key:
                self.resolved[raw] = resolved
        return resolved

    def child(self, key: tuple[str, ...]) -> Any:
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self.metric.labels(*key)
        return child


class Recorder:
    """Counts what deterrence does, in Prometheus and in hourly SQLite buckets.

    Thread-safe and usable from async code: every method only touches memory.
    ``await start()`` begins the periodic flush to the store (and the separate
    metrics port when ``settings.metrics_port`` is set); ``await stop()`` ends it
    with a final flush. ``clock`` returns Unix time; tests and backfills may
    replace it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        lists: Sequence[ListInfo],
        variants: Sequence[str],
        locales: Sequence[str],
        services: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: defaultdict[tuple[int, str, tuple[str, ...]], int] = defaultdict(int)
        self._pending_lists: list[ListState] | None = None
        self._pending_reloads: list[ReloadEvent] = []
        self._domain_written = False
        self._last_purge = 0.0
        self._task: asyncio.Task[None] | None = None
        self._http_server: WSGIServer | None = None
        self.prometheus_failure: OSError | None = None
        """Why this process stopped updating its Prometheus metrics, if it did
        (a multiprocess directory that became unwritable; see ``_prometheus_failed``)."""

        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is not None:
            try:
                self.multiprocess_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RuntimeError(
                    f"{MULTIPROC_ENV}={self.multiprocess_dir} is not a usable directory: {exc}"
                ) from exc

        self.registry = CollectorRegistry(auto_describe=True)
        self.exposition_registry: Collector
        if self.multiprocess_dir is not None:
            # Metrics live in files shared by all workers; expose their sum.
            self.exposition_registry = CollectorRegistry()
            MultiProcessCollector(  # type: ignore[no-untyped-call]
                self.exposition_registry, path=str(self.multiprocess_dir)
            )
        else:
            # Without the ``*_created`` series, which multiprocess mode lacks anyway:
            # the same series whichever way the app is served.
            self.exposition_registry = _WithoutCreated(self.registry)

        self._variants = frozenset(variants)
        message_variants = frozenset([*variants, NO_VARIANT])
        self._families: dict[str, _Family] = {}
        self._inspected = self._family(
            INSPECTED,
            "Search requests whose query was inspected.",
            {"route": settings.search_paths},
        )
        self._page_views = self._family(
            PAGE_VIEWS,
            "Warning pages shown.",
            {"variant": variants, "locale": locales},
        )
        self._help_clicks = self._family(
            HELP_CLICKS,
            "Clicks from a warning page or banner to a help service.",
            {"service": services, "variant": message_variants},
        )
        self._reloads = self._family(LIST_RELOADS, "Term list reloads.", {"result": RELOAD_RESULTS})
        self._errors = self._family(ERRORS, "Errors, by kind.", {"kind": ERROR_KINDS})
        self._interventions = self._family(
            INTERVENTIONS,
            "Searches that matched a list, by the list's action and the message variant.",
            {"list": (), "category": (), "action": ACTIONS, "variant": message_variants},
            initialise=False,
        )
        self._match_duration = Histogram(
            MATCH_DURATION,
            "Time to match one query against all lists.",
            buckets=MATCH_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._list_terms = Gauge(
            LIST_TERMS,
            "Terms in each loaded list.",
            ["list"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self._list_ids: frozenset[str] = frozenset()
        self._configure_lists(lists)
        self._pending_lists = self._list_states(lists)

        finaliser = weakref.WeakMethod(self.flush)
        atexit.register(_flush_at_exit, finaliser)

    # --- configuration -------------------------------------------------------

    def _family(
        self,
        name: str,
        documentation: str,
        labels: dict[str, Iterable[str]],
        *,
        initialise: bool = True,
    ) -> _Family:
        family = _Family(
            name=name,
            metric=Counter(name, documentation, list(labels), registry=self.registry),
            label_names=tuple(labels),
            allowed=tuple(frozenset(v) for v in labels.values()),
            children={},
        )
        if initialise:
            for key in product(*(dict.fromkeys(v) for v in labels.values())):
                family.child(key)
        self._families[name] = family
        return family

    def _configure_lists(self, lists: Sequence[ListInfo]) -> None:
        new_ids = frozenset(t.id for t in lists)
        gone = self._list_ids - new_ids
        self._list_ids = new_ids
        allowed = self._interventions.allowed
        self._interventions.allowed = (
            new_ids | allowed[0],
            frozenset(t.category for t in lists) | allowed[1],
            allowed[2],
            allowed[3],
        )
        self._domain_written = False
        if self.prometheus_failure is None:
            try:
                self._list_series(lists, gone)
            except OSError as exc:
                self._prometheus_failed(exc)

    def _list_series(self, lists: Sequence[ListInfo], gone: Iterable[str]) -> None:
        variants = sorted(self._variants) or [NO_VARIANT]
        for term_list in lists:
            # A list without a message (count) or with one: only real combinations.
            shown = [NO_VARIANT] if term_list.action == "count" else variants
            for variant in shown:
                self._interventions.child(
                    (term_list.id, term_list.category, term_list.action, variant)
                )
            self._list_terms.labels(term_list.id).set(len(term_list.terms))
        for list_id in gone:
            if self.multiprocess_dir is None:
                self._list_terms.remove(list_id)
            else:  # prometheus-client cannot remove series in multiprocess mode
                self._list_terms.labels(list_id).set(0)

    def _list_states(self, lists: Sequence[ListInfo]) -> list[ListState]:
        now = datetime.fromtimestamp(self._clock(), UTC)
        return [ListState(t.id, t.category, t.action, t.version, len(t.terms), now) for t in lists]

    # --- recording (called per request: memory only) -------------------------

    def _count(self, family: _Family, raw: tuple[str, ...]) -> None:
        if self.prometheus_failure is None:
            try:
                key, child = family.resolve(raw)
                child.inc()
            except OSError as exc:
                key = family.key(raw)
                self._prometheus_failed(exc)
        else:
            key = family.key(raw)
        hour = int(self._clock() // SECONDS_PER_HOUR)
        with self._lock:
            self._pending[(hour, family.name, key)] += 1

    def _prometheus_failed(self, exc: OSError) -> None:
        """A multiprocess metric file could not be created: the Prometheus metrics
        of this process stop here, and its counts go on into the store.

        prometheus-client opens a file per process and metric type when it first
        needs one, in a process forked after they were set up (gunicorn
        ``--preload``) at its first update. When that fails (the directory is
        read-only, gone or full), its values are left pointing at closed files
        and every later update would raise too, so none is tried again; a
        restart of the worker, once the directory is writable, brings them back."""
        with self._lock:
            if self.prometheus_failure is not None:
                return
            self.prometheus_failure = exc
            hour = int(self._clock() // SECONDS_PER_HOUR)
            self._pending[(hour, ERRORS, ("multiprocess_dir",))] += 1
        logger.error(
            "cannot write Prometheus metrics to %s (%s): this process stops updating "
            "them, and its counts still go to the store; restart it once the directory "
            "is writable",
            self.multiprocess_dir,
            exc.strerror or exc,
        )

    def inspected(self, route: str) -> None:
        self._count(self._inspected, (route,))

    def intervention(self, *, list_id: str, category: str, action: str, variant: str) -> None:
        self._count(self._interventions, (list_id, category, action, variant))

    def page_view(self, *, variant: str, locale: str) -> None:
        self._count(self._page_views, (variant, locale))

    def help_click(self, *, service: str, variant: str) -> None:
        self._count(self._help_clicks, (service, variant))

    def observe_match(self, seconds: float) -> None:
        if self.prometheus_failure is None:
            try:
                self._match_duration.observe(seconds)
            except OSError as exc:
                self._prometheus_failed(exc)

    def error(self, kind: str) -> None:
        self._count(self._errors, (kind,))

    def list_reload(
        self,
        result: Literal["ok", "error"],
        *,
        lists: Sequence[ListInfo] | None = None,
        error: str | None = None,
    ) -> None:
        """Record a reload. ``error`` describes the list files (never a query)."""
        self._count(self._reloads, (result,))
        event = ReloadEvent(datetime.fromtimestamp(self._clock(), UTC), result, error)
        with self._lock:
            self._pending_reloads.append(event)
        if result == "ok" and lists is not None:
            self._configure_lists(lists)
            states = self._list_states(lists)
            with self._lock:
                self._pending_lists = states

    # --- the store -------------------------------------------------------------

    @property
    def store(self) -> Store | None:
        if not self.settings.store_enabled:
            return None
        store: Store | None = getattr(self, "_store", None)
        if store is None:
            store = self._store = Store(self.settings.data_dir)
        return store

    def _domain(self) -> list[tuple[str, str]]:
        rows = []
        for name, family in self._families.items():
            names = family.label_names
            for key in list(family.children):
                if OTHER not in key:
                    rows.append((name, encode_labels(tuple(zip(names, key, strict=True)))))
        return rows

    def pending_counts(self) -> dict[tuple[str, str, str], int]:
        """Counts not yet flushed, as {(hour, metric, encoded labels): n}."""
        with self._lock:
            pending = dict(self._pending)
        return self._encode(pending)

    def _encode(
        self, pending: dict[tuple[int, str, tuple[str, ...]], int]
    ) -> dict[tuple[str, str, str], int]:
        encoded: dict[tuple[str, str, str], int] = defaultdict(int)
        for (hour, name, key), n in pending.items():
            names = self._families[name].label_names
            labels = encode_labels(tuple(zip(names, key, strict=True)))
            encoded[(hour_key_from_epoch(hour), name, labels)] += n
        return encoded

    def flush(self) -> bool:
        """Write pending counts to the store. On failure they stay pending for the
        next flush and ``deterrence_errors_total{kind="store_write"}`` goes up;
        never raises. Returns whether the write succeeded."""
        store = self.store
        if store is None:
            return True
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(int)
                lists, self._pending_lists = self._pending_lists, None
                reloads, self._pending_reloads = self._pending_reloads, []
            domain = [] if self._domain_written else self._domain()
            try:
                store.write(self._encode(pending), domain=domain, lists=lists, reloads=reloads)
                self._domain_written = True
                now = self._clock()
                if now - self._last_purge >= SECONDS_PER_HOUR:
                    store.purge_retention(
                        self.settings.retention_days, now=datetime.fromtimestamp(now, UTC)
                    )
                    self._last_purge = now
            except (OSError, sqlite3.Error) as exc:
                logger.warning("could not write counts to %s: %s", store.path, exc)
                with self._lock:
                    for key, n in pending.items():
                        self._pending[key] += n
                    if self._pending_lists is None:
                        self._pending_lists = lists
                    self._pending_reloads[:0] = reloads
                self.error("store_write")
                return False
            return True

    async def _flush_periodically(self) -> None:
        interval = max(self.settings.flush_interval_seconds, 0.01)
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.flush)

    async def start(self) -> None:
        """Start periodic flushing (and the separate metrics port, if configured)."""
        if self.settings.metrics_port is not None and self._http_server is None:
            self._serve_metrics_port(self.settings.metrics_host, self.settings.metrics_port)
        if self.store is not None and self._task is None:
            await asyncio.to_thread(self.flush)
            self._task = asyncio.create_task(self._flush_periodically())

    async def stop(self) -> None:
        """Stop flushing, with a final flush."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.flush)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None

    # --- exposition ------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the text format the ``Accept`` header asks for."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.exposition_registry), content_type

    @property
    def metrics_app(self) -> MetricsApp:
        return MetricsApp(self)

    def _serve_metrics_port(self, host: str, port: int) -> None:
        try:
            self._http_server = serve_metrics_port(self.exposition_registry, host, port)
        except OSError as exc:
            if self.multiprocess_dir is not None and exc.errno == errno.EADDRINUSE:
                # Another worker (or gunicorn's master, see deploy/gunicorn.conf.py)
                # already serves the shared metrics on this port.
                logger.debug("metrics port %s:%d already served", host, port)
                return
            raise


class _WithoutCreated(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def _flush_at_exit(method: weakref.WeakMethod[Callable[[], bool]]) -> None:
    flush = method()
    if flush is not None:
        flush()


class MetricsApp:
    """ASGI app serving the Prometheus exposition (mount it at ``metrics_path``)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        accept = ""
        for name, value in scope.get("headers", ()):
            if name == b"accept":
                accept = value.decode("latin-1")
        try:
            body, content_type = await asyncio.to_thread(self.recorder.exposition, accept)
        except (OSError, RuntimeError):
            # The multiprocess directory went away or holds unreadable files, or a
            # corrupt one (prometheus-client raises RuntimeError for those).
            self.recorder.error("multiprocess_dir")
            logger.exception("could not read metrics")
            await _respond(send, 500, b"metrics unavailable\n", [])
            return
        headers = [(b"content-type", content_type.encode("latin-1"))]
        await _respond(send, 200, body, headers, head=scope["method"] == "HEAD")


_PRIVACY_HEADERS = raw_headers(PLAIN_HEADERS)
"""DESIGN §6's headers, on /metrics too: no caching, sniffing, indexing or framing."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (wsgiref writes each one to stderr)."""


def serve_metrics_port(registry: Collector, host: str, port: int) -> WSGIServer:
    """prometheus-client's ``start_http_server`` on a thread of its own, with the
    §6 headers on every answer, as on the app's own ``/metrics``."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    exposition: WSGIApplication = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *PLAIN_HEADERS.items()], exc_info)

        return exposition(environ, start)

    server_class = type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})
    server: WSGIServer = make_server(
        str(address[0]), port, app, server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-port", daemon=True).start()
    return server


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> None:
    headers = [
        *headers,
        (b"content-length", str(len(body)).encode()),
        *_PRIVACY_HEADERS,
    ]
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
