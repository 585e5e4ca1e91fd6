"""A probe client for the soak: requests at random times, each answer checked
and timed by the kernel.

The latency of a request is measured from just before its ``send()`` to the
moment the kernel received the last byte of its answer (``SO_TIMESTAMPNS``),
not to the moment this process got round to reading it. On a shared two-core
machine the probe's own process is often descheduled for milliseconds (the
soak used to see 500-1,100 such stalls over 1 ms a minute, up to 10 ms); timed
by the process's own clock, every stall that fell while an answer was on its
way counted as the server's latency, and the reload's CPU use, which makes such
stalls likelier, showed up as a server spike. The kernel's receive timestamp
is taken when the server's write reaches the socket, whatever this process is
doing then.

Connections send at Poisson times (independently), one request at a time, over
plain non-blocking sockets and a selector: probes sent in step would queue
behind one another and share every stall.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import quote_plus

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's; Python 3.11 lacks the name
_TIMESPEC = struct.Struct("@ll")  # struct timespec
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


@dataclass
class Sample:
    at: float
    """time.monotonic() when the request was sent (one clock for every process)."""
    seconds: float
    ok: bool


@dataclass
class Probe:
    samples: list[Sample] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    newest: str = ""
    written_at: dict[str, float] = field(default_factory=dict)
    """When each added term was written to the list file."""
    blocked_at: dict[str, float] = field(default_factory=dict)
    """When a response first showed each added term blocked."""
    stalls: list[float] = field(default_factory=list)
    """How late this client sent a request, when over a millisecond (s): its own
    scheduling delays, which the kernel timestamps keep out of the latencies."""

    def took_effect(self) -> list[float]:
        return [
            self.blocked_at[t] - at for t, at in self.written_at.items() if t in self.blocked_at
        ]


Query = tuple[str, bool]
"""A search and whether its answer must be the warning page."""


def parse_response(buffer: bytes | bytearray) -> tuple[int, int, bool] | None:
    """(status, length, is the warning page) of the first whole response in
    ``buffer``, or None while it is incomplete. The warning page (and only it)
    carries DESIGN §6's ``X-Robots-Tag``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    position = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2 + size + 2
            if position > len(buffer):
                return None
            if size == 0:
                break
    else:
        position += int(headers.get("content-length", "0"))
        if position > len(buffer):
            return None
    return status, position, "x-robots-tag" in headers


def _kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return float(seconds + nanoseconds * 1e-9)
    return None


class _Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.query: Query | None = None
        self.sent_real = 0.0
        self.sent_at = 0.0
        self.received_real = 0.0
        self.next_at = 0.0
        self.idle_since = 0.0


def run_probe(
    probe: Probe,
    port: int,
    until: float,
    rate: float,
    connections: int,
    queries: Sequence[Query],
    news: Connection | None = None,
) -> None:
    """Probe until ``until`` (time.monotonic()) at about ``rate`` requests a
    second in all (0: back to back), with ``queries`` and, one request in five,
    the newest term announced on ``news``."""
    interval = connections / rate if rate else 0.0
    rng = random.Random(11)
    selector = selectors.DefaultSelector()
    if news is not None:
        selector.register(news.fileno(), selectors.EVENT_READ, None)
    idle: list[_Connection] = []

    def open_connection() -> None:
        connection = _Connection(port)
        connection.idle_since = time.monotonic()
        connection.next_at = connection.idle_since + (
            rng.expovariate(1 / interval) if interval else 0.0
        )
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        idle.append(connection)

    def send(connection: _Connection) -> None:
        newest = probe.newest
        query = (newest, True) if newest and rng.random() < 0.2 else rng.choice(queries)
        request = f"GET /search?q={quote_plus(query[0])} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        connection.query = query
        connection.sent_at = time.monotonic()
        connection.sent_real = time.time()
        connection.sock.send(request.encode())  # a few hundred bytes: never a partial send

    def finish(connection: _Connection, status: int, blocked: bool) -> None:
        assert connection.query is not None
        query, want_block = connection.query
        correct = status == 200 and blocked == want_block
        if query == probe.newest and status == 200:
            if blocked:
                probe.blocked_at.setdefault(query, time.monotonic())
            else:
                # Not in service yet is fine; after a response showed it blocked, a
                # request sent later must be blocked too (one process, one swap).
                correct = connection.sent_at < probe.blocked_at.get(query, float("inf"))
        seconds = connection.received_real - connection.sent_real
        probe.samples.append(Sample(connection.sent_at, seconds, correct))
        if not correct:
            probe.wrong.append(f"{query!r}: {status} blocked={blocked}")
        connection.query = None
        connection.next_at += rng.expovariate(1 / interval) if interval else 0.0
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def fail(connection: _Connection, error: str) -> None:
        probe.errors.append(error)
        selector.unregister(connection.sock)
        connection.sock.close()
        open_connection()

    def receive(connection: _Connection) -> None:
        try:
            data, ancillary, _, _ = connection.sock.recvmsg(65536, _ANCILLARY)
        except BlockingIOError:
            return
        except OSError as exc:
            fail(connection, f"{type(exc).__name__}: {exc}")
            return
        if not data:
            fail(connection, "the server closed the connection")
            return
        connection.received_real = _kernel_time(ancillary) or time.time()
        connection.buffer += data
        parsed = parse_response(connection.buffer)
        if parsed is None:
            return
        if connection.query is None:
            fail(connection, "an answer nobody asked for")
            return
        status, length, blocked = parsed
        del connection.buffer[:length]
        finish(connection, status, blocked)

    for _ in range(connections):
        open_connection()
    try:
        while (now := time.monotonic()) < until:
            for connection in [c for c in idle if c.next_at <= now]:
                idle.remove(connection)
                # Late by this client's own doing: not while it waited for an answer.
                if (late := now - max(connection.next_at, connection.idle_since)) > 0.001:
                    probe.stalls.append(late)
                send(connection)
            wake = min((c.next_at for c in idle), default=until)
            for key, _ in selector.select(max(0.0, min(wake, until) - time.monotonic())):
                if key.data is None:
                    assert news is not None
                    while news.poll():
                        probe.newest = news.recv()
                else:
                    receive(key.data)
    finally:
        for key in list(selector.get_map().values()):
            if key.data is not None:
                key.data.sock.close()
        selector.close()
