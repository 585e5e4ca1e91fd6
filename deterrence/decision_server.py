"""A small HTTP/1.1 server for the decision service (``deterrence authz``).

A proxy asks the decision service about every search, so what a decision costs is
added to every search the site serves. Under uvicorn most of that cost was
uvicorn's own: an ASGI app answering an empty 200 takes ~26 µs of CPU per
request there, a decision ~32 µs (``bench/authz.py``). This server answers what
``quick`` can decide at once (a repeat of a search that matched nothing) without
an ASGI cycle at all: parse (httptools, in C), decide, write. Everything else —
first sights, warning pages, assets, metrics — goes through the ASGI app, as
under any server.

Per connection, requests are answered in order (pipelined ones wait their turn);
an idle keep-alive connection is closed after ``keep_alive`` seconds; a malformed
request gets 400 and the connection is closed; request bodies over ``max_body``
get 413. The app's lifespan runs at start-up and shutdown; SIGINT and SIGTERM stop
the server, letting requests under way finish. Nothing is logged per request: a
decision request carries the search in its headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools
from starlette.types import ASGIApp, Message, Scope

from deterrence.headers import raw_headers
from deterrence.pages import PLAIN_HEADERS

__all__ = ["QuickAnswer", "serve"]

logger = logging.getLogger("deterrence.decision_server")

QuickAnswer = Callable[[Scope], list[tuple[bytes, bytes]] | None]
"""Given a request's scope, the headers of an empty 200 answer, or None to run the
ASGI app. It must not block, and its headers must include content-length."""

MAX_HEADERS = 100
MAX_QUEUED = 16  # pipelined requests waiting before the connection stops reading
SWEEP_SECONDS = 1.0
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
# The server's own errors carry the headers of every page deterrence serves (DESIGN §6).
_PLAIN_HEADERS = [*raw_headers(PLAIN_HEADERS), (b"content-type", b"text/plain; charset=utf-8")]


class _Server:
    def __init__(
        self, app: ASGIApp, quick: QuickAnswer | None, keep_alive: float, max_body: int
    ) -> None:
        self.app = app
        self.quick = quick
        self.keep_alive = keep_alive
        self.max_body = max_body
        self.connections: set[_Connection] = set()
        self.state: dict[str, Any] = {}
        self.date = b""
        self.stamp_date()

    def stamp_date(self) -> None:
        self.date = formatdate(time.time(), usegmt=True).encode()


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[tuple[Scope, bytes, bool]] = deque()
        self.busy = False
        self.closed = False
        self.paused = False
        self.last_active = self.loop.time()
        self.disconnected = self.loop.create_future()
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        # The request being parsed:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.failed = False

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.client = _address(transport.get_extra_info("peername"))
        self.local = _address(transport.get_extra_info("sockname"))
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if not self.disconnected.done():
            self.disconnected.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self.failed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(400, b"Upgrades are not supported")
        except httptools.HttpParserError:
            self.fail(400, b"Bad request")

    # -- httptools callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            self.fail(431, b"Too many headers")
            return
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.fail(413, b"Request body too large")
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.failed:
            return
        try:
            scope = self.scope()
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            self.fail(400, b"Bad request target")
            return
        request = (scope, b"".join(self.body), self.parser.should_keep_alive())
        if self.busy or self.queue:
            self.queue.append(request)
            if len(self.queue) >= MAX_QUEUED and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True
            return
        self.dispatch(*request)

    # -- answering ----------------------------------------------------------------

    def scope(self) -> Scope:
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path or b"/"
        path = raw_path.decode("ascii")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.local,
            "state": self.server.state.copy(),
        }

    def dispatch(self, scope: Scope, body: bytes, keep_alive: bool) -> None:
        quick = self.server.quick
        headers = quick(scope) if quick is not None else None
        if headers is not None:
            self.write_head(200, headers, keep_alive)
            self.finished(keep_alive)
            return
        self.busy = True
        self.loop.create_task(self.run_app(scope, body, keep_alive))

    async def run_app(self, scope: Scope, body: bytes, keep_alive: bool) -> None:
        cycle = _Cycle(self, scope["method"] == "HEAD", keep_alive, body)
        raised = False
        try:
            await self.server.app(scope, cycle.receive, cycle.send)
        except Exception as exc:  # the server must outlive any request
            # The type only: a message may quote the request, and so the search.
            logger.error("decision service: %s while answering a request", type(exc).__name__)
            raised = True
        if raised or not cycle.complete:  # no answer, or not all of it: hang up
            if not cycle.started:
                self.write_plain(500, b"Internal server error", keep_alive=False)
            keep_alive = False
        self.busy = False
        self.finished(keep_alive)

    def finished(self, keep_alive: bool) -> None:
        """One answer is out: close, or go on with the next request."""
        self.last_active = self.loop.time()
        if not keep_alive or self.failed:
            self.close()
            return
        while self.queue and not self.busy and not self.closed:
            self.dispatch(*self.queue.popleft())
        if self.paused and len(self.queue) < MAX_QUEUED // 2 and self.transport is not None:
            self.transport.resume_reading()
            self.paused = False

    def write_head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        if self.transport is None or self.closed:
            return
        lines = [
            b"HTTP/1.1 %d %s\r\ndate: %s\r\n"
            % (status, _REASONS.get(status, b""), self.server.date)
        ]
        lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        self.transport.write(b"".join(lines))

    def write_plain(self, status: int, body: bytes, *, keep_alive: bool) -> None:
        headers = [*_PLAIN_HEADERS, (b"content-length", b"%d" % len(body))]
        self.write_head(status, headers, keep_alive)
        if self.transport is not None and not self.closed:
            self.transport.write(body)

    def fail(self, status: int, body: bytes) -> None:
        """A request that cannot be answered: say why and hang up (once the
        answer under way, if any, is out)."""
        self.failed = True
        self.queue.clear()
        if not self.busy:
            self.write_plain(status, body, keep_alive=False)
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def idle_for(self, now: float) -> float:
        if self.busy or self.queue:
            return 0.0
        return now - self.last_active


class _Cycle:
    """One request's ASGI receive and send."""

    def __init__(self, connection: _Connection, head: bool, keep_alive: bool, body: bytes) -> None:
        self.connection = connection
        self.head = head
        self.keep_alive = keep_alive
        self.body = body
        self.body_sent = False
        self.started = False
        self.head_sent = False
        self.complete = False
        self.chunked = False
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []

    async def receive(self) -> Message:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.connection.disconnected
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        connection = self.connection
        if message["type"] == "http.response.start":
            if self.started:
                raise RuntimeError("the response has started already")
            self.started = True
            self.status = message["status"]
            self.headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
            return
        if message["type"] != "http.response.body" or not self.started or self.complete:
            raise RuntimeError(f"unexpected ASGI message {message['type']!r}")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        transport = connection.transport
        if not self.head_sent:
            headers = self.headers
            if not any(name == b"content-length" for name, _ in headers):
                if more:
                    self.chunked = True
                    headers = [*headers, (b"transfer-encoding", b"chunked")]
                else:
                    headers = [*headers, (b"content-length", b"%d" % len(body))]
            connection.write_head(self.status, headers, self.keep_alive)
            self.head_sent = True
        if transport is not None and not connection.closed and not self.head:
            if self.chunked:
                if body:
                    transport.write(b"%x\r\n%s\r\n" % (len(body), body))
                if not more:
                    transport.write(b"0\r\n\r\n")
            elif body:
                transport.write(body)
        if not more:
            self.complete = True


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


class _Lifespan:
    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.started

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.stopped

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.send)
        except Exception as exc:
            for future in (self.started, self.stopped):
                if not future.done():
                    future.set_exception(exc)
        for future in (self.started, self.stopped):  # an app without lifespan
            if not future.done():
                future.set_result(None)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.started.set_result(None)
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set_result(None)
        elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            future = self.started if "startup" in kind else self.stopped
            future.set_exception(RuntimeError(message.get("message") or kind))


async def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    quick: QuickAnswer | None = None,
    keep_alive: float = 5.0,
    max_body: int = 1 << 20,
    ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM (or ``stop`` is set)."""
    loop = asyncio.get_running_loop()
    server = _Server(app, quick, keep_alive, max_body)
    lifespan = _Lifespan(app, server.state)
    await lifespan.startup()
    listening = await loop.create_server(
        lambda: _Connection(server), host, port, reuse_address=True, backlog=1024
    )
    stop = stop or asyncio.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(number, stop.set)
    sweeper = loop.create_task(_sweep(server, stop))
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        listening.close()
        sweeper.cancel()
        deadline = loop.time() + 10
        while any(c.busy for c in server.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(server.connections):
            connection.close()
        await listening.wait_closed()
        await lifespan.shutdown()


async def _sweep(server: _Server, stop: asyncio.Event) -> None:
    """Once a second: the Date header, and idle keep-alive connections closed."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await asyncio.sleep(SWEEP_SECONDS)
        server.stamp_date()
        now = loop.time()
        for connection in list(server.connections):
            if connection.idle_for(now) > server.keep_alive:
                connection.close()
