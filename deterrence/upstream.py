"""The proxy's HTTP/1.1 client for its one upstream, on asyncio and httptools.

A proxy needs little of a general HTTP client (one origin, requests it already has
parsed, bodies passed through), and a general client's per-request machinery was
half of ``deterrence proxy``'s CPU: with this one the proxy forwards about 1.5x
more small requests per second than with aiohttp (docs/proxy.md). What it does:

* a pool of keep-alive connections, at most ``max_connections`` in use, most
  recently used first, none kept idle longer than ``IDLE_LIMIT``; waiting for one
  is bounded by ``pool_timeout``;
* explicit timeouts: ``connect_timeout`` to open a connection, ``read_timeout``
  for each wait on the upstream (the response head, then each piece of the body),
  ``write_timeout`` for each wait until the upstream takes more of a request body;
* bodies streamed both ways with back-pressure: a request body is written as it
  arrives (``Content-Length`` kept, else chunked); a response body is handed on
  piece by piece, and reading from the upstream pauses while too much is waiting;
* the response exactly as framed by the upstream, decoded from its transfer
  coding only (``Content-Encoding`` is never touched);
* an idempotent request without a body, on a reused connection that the
  upstream closed as it arrived (its keep-alive timeout), is sent once more on a
  new one; others get the error (RFC 9110 §9.2.2: a proxy never retries what
  may not be idempotent).

Every failure is an :class:`UpstreamError` whose ``kind`` is the
``deterrence_errors_total`` kind: ``upstream_connect``, ``upstream_timeout`` or
``upstream_reset``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools

__all__ = ["UpstreamError", "UpstreamPool", "UpstreamResponse"]

Headers = list[tuple[bytes, bytes]]

IDLE_LIMIT = 4.0
"""Seconds a kept connection may wait in the pool: below the shortest keep-alive
timeout common among servers (uvicorn's 5 s), so that a request seldom meets a
connection the upstream is closing (which only idempotent requests survive)."""
_HIGH_WATER = 256 * 1024  # response bytes waiting before reading pauses
_LOW_WATER = 64 * 1024  # ... and below which it resumes


class UpstreamError(Exception):
    """The upstream could not be reached, was too slow, or broke the exchange."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class _Connection(asyncio.Protocol):
    """One connection to the upstream, carrying one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False  # has carried an exchange before
        self.spoiled = False  # a request body was cut short: never reuse
        self.idle_since = 0.0  # loop time it last went back to the pool
        self._writable: asyncio.Future[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.start(head_only=False)

    # -- one exchange ----------------------------------------------------------

    def start(self, *, head_only: bool) -> None:
        """Get ready for a new exchange (a HEAD request's answer has no body)."""
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._informational = False
        self.status = 0
        self.headers: Headers = []
        self.head_done = False
        self.complete = False
        self.reusable = False
        self._until_close = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self.failure: UpstreamError | None = None

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Send ``data``; wait (at most ``timeout``) while the upstream is not
        taking more."""
        transport = self.transport
        if transport is None or self.closed:
            raise self.failure or UpstreamError("upstream_reset", "connection closed")
        transport.write(data)
        if self._writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._writable)
            except TimeoutError:
                raise UpstreamError("upstream_timeout", "upstream not reading") from None
        if self.closed and not self.head_done:
            raise self.failure or UpstreamError("upstream_reset", "connection closed")

    async def head(self, timeout: float | None) -> None:
        """Wait until the response head (status and headers) has arrived."""
        while not self.head_done:
            await self._wait(timeout, "no response")

    async def next_chunk(self, timeout: float | None) -> bytes:
        """The next piece of the response body, or b"" once it is complete."""
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._reading_paused and self._buffered < _LOW_WATER and self.transport:
                    self._reading_paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return b""
            await self._wait(timeout, "response body stalled")

    async def _wait(self, timeout: float | None, what: str) -> None:
        if self.failure is not None:
            raise self.failure
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup
        except TimeoutError:
            raise UpstreamError("upstream_timeout", what) from None
        finally:
            self._wakeup = None
        if self.failure is not None and not self._body:
            raise self.failure

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    @property
    def drained(self) -> bool:
        """The whole response has arrived and been handed on."""
        return self.complete and not self._body

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.complete:
            self.reusable = False  # bytes nobody asked for: do not trust the connection
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("upstream_reset", f"malformed response: {exc}"))
            self.close()
            return
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._until_close and self.head_done and not self.complete:
            self.complete = True  # a body delimited by the end of the connection
        elif not self.complete:
            detail = f"connection lost ({type(exc).__name__})" if exc else "connection closed"
            self._fail(UpstreamError("upstream_reset", detail))
        self.resume_writing()  # a writer waiting for room learns of it
        self._wake()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _fail(self, failure: UpstreamError) -> None:
        if self.failure is None:
            self.failure = failure
        self._wake()

    # -- httptools callbacks -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # 1xx: an interim answer (103 Early Hints); the real one follows. 101
            # cannot happen: the proxy never forwards Upgrade.
            self._informational = True
            self.headers = []
            return
        self.status = status
        self.head_done = True
        if self._head_only:
            self.complete = True
            self.reusable = False  # the parser would wait for the body that never comes
        elif status not in (204, 304):
            self._until_close = not any(
                name.lower() in (b"content-length", b"transfer-encoding")
                for name, _ in self.headers
            )
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._head_only:
            self.complete = True
            self.reusable = self._parser.should_keep_alive()
        self._wake()


class UpstreamResponse:
    """The upstream's answer: status and raw headers now, the body as it comes."""

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers

    async def body(self) -> AsyncIterator[tuple[bytes, bool]]:
        """Pieces of the body, each with whether more follows. A body that has
        all arrived ends with its last piece, not with one more empty one."""
        connection = self._connection
        assert connection is not None
        timeout = self._pool.read_timeout
        while True:
            chunk = await connection.next_chunk(timeout)
            more = bool(chunk) and not connection.drained
            yield chunk, more
            if not more:
                return

    def release(self) -> None:
        """Hand the connection back (kept for reuse only after a complete answer)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._release(connection)

    def close(self) -> None:
        """Drop the connection (an answer abandoned half-way)."""
        if self._connection is not None:
            self._connection.reusable = False
        self.release()


class UpstreamPool:
    """Connections to one upstream ``host:port`` (TLS when ``tls``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = False,
        max_connections: int = 100,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 60.0,
        write_timeout: float | None = 60.0,
        pool_timeout: float | None = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl.create_default_context() if tls else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.pool_timeout = pool_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self.closed = False

    async def request(
        self,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        *,
        chunked: bool,
        head_only: bool,
        idempotent: bool,
    ) -> UpstreamResponse:
        """Send a request (``head``: its request line and headers, ending in a
        blank line) and wait for the response head. ``chunked``: send ``body``
        in the chunked transfer coding; ``head_only``: a HEAD request (whose
        answer has no body); ``idempotent``: its method allows a retry."""
        try:
            async with asyncio.timeout(self.pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise UpstreamError("upstream_timeout", "no free connection in the pool") from None
        connection: _Connection | None = None
        try:
            connection = await self._connection()
            try:
                await self._exchange(connection, head, body, chunked=chunked, head_only=head_only)
            except UpstreamError:
                retry = idempotent and body is None and connection.used
                if not retry or connection.head_done or connection.failure is None:
                    raise
                # The upstream closed this idle connection as it was reused: once
                # more, on a new one (nothing of the request has been consumed).
                connection.close()
                connection = None
                connection = await self._connection(fresh=True)
                await self._exchange(connection, head, body, chunked=chunked, head_only=head_only)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        return UpstreamResponse(self, connection)

    async def _exchange(
        self,
        connection: _Connection,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        *,
        chunked: bool,
        head_only: bool,
    ) -> None:
        connection.start(head_only=head_only)
        write_timeout = self.write_timeout
        await connection.write(head, write_timeout)
        if body is not None:
            async for chunk in body:
                if connection.head_done:
                    # Answered early (a 413, a 405): the rest of the body is not
                    # wanted, and the upstream still expects it on this connection.
                    connection.spoiled = True
                    break
                if chunked:
                    chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
                await connection.write(chunk, write_timeout)
            else:
                if chunked:
                    await connection.write(b"0\r\n\r\n", write_timeout)
        await connection.head(self.read_timeout)

    async def _connection(self, *, fresh: bool = False) -> _Connection:
        loop = asyncio.get_running_loop()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.closed:
                continue
            if loop.time() - connection.idle_since > IDLE_LIMIT:
                connection.close()  # the upstream may be closing it right now
                continue
            connection.used = True
            return connection
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self._ssl
                )
        except TimeoutError:
            raise UpstreamError("upstream_timeout", "connect timed out") from None
        except OSError as exc:
            raise UpstreamError("upstream_connect", type(exc).__name__) from None
        return connection

    def _release(self, connection: _Connection) -> None:
        if (
            connection.drained
            and connection.reusable
            and not connection.spoiled
            and not connection.closed
            and not self.closed
        ):
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    async def close(self) -> None:
        """Close the idle connections; those in use close when released."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
