"""The proxy's own HTTP/1.1 client (deterrence/upstream.py), through the proxy: a
real server in front of hand-written upstream answers that a framework would not
produce on demand (close-delimited bodies, interim answers, keep-alive races)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from gateway_support import listening, serve
from starlette.types import Receive, Scope, Send

from deterrence import upstream
from deterrence.proxy import ProxyApp

Handler = Callable[[socket.socket, bytes, bytes], bytes | None]
"""Answers one request on a connection, given its head and the bytes read past
it; returns what is left of those once it has read a body, or None."""


class Recorder:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, kind: str) -> None:
        self.errors.append(kind)


@contextmanager
def scripted_upstream(handler: Handler) -> Iterator[tuple[str, list[bytes]]]:
    """A TCP server answering each request with ``handler``; yields its URL and
    the request heads it received, in order. A connection is served (on a thread
    of its own) until the client closes it or the handler does."""
    heads: list[bytes] = []
    connections: list[socket.socket] = []

    def serve_connection(conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        try:
            while True:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                heads.append(head)
                left = handler(conn, head, data)
                if left is not None:
                    data = left
                if conn.fileno() == -1:
                    return
        except OSError:
            return

    def start(conn: socket.socket) -> None:
        connections.append(conn)
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()

    with listening(start, connections) as url:
        yield url, heads


@contextmanager
def proxy_to(target: str, **options: Any) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    with serve(ProxyApp(target, recorder=recorder, **options)) as url:
        yield url, recorder


def client() -> httpx2.Client:
    return httpx2.Client(trust_env=False, timeout=30)


@contextmanager
def through_proxy(
    answer: Handler, **options: Any
) -> Iterator[tuple[httpx2.Client, str, Recorder, list[bytes]]]:
    """A client, the proxy's URL and error recorder, and the request heads that
    reached a scripted upstream behind it."""
    with (
        scripted_upstream(answer) as (target, heads),
        proxy_to(target, **options) as (url, recorder),
        client() as http,
    ):
        yield http, url, recorder, heads


def test_a_body_that_ends_with_the_connection_arrives_whole() -> None:
    body = b"until the end " * 5000

    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
        conn.close()

    with through_proxy(answer) as (http, url, recorder, _):
        response = http.get(f"{url}/old-server")
        assert response.status_code == 200
        assert response.content == body
        assert http.get(f"{url}/again").content == body  # a new connection each time
    assert recorder.errors == []


def test_a_head_answer_has_no_body_and_the_next_request_is_answered() -> None:
    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        if head.startswith(b"HEAD "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello, world")

    with through_proxy(answer) as (http, url, _, heads):
        started = time.monotonic()
        response = http.head(f"{url}/page")
        assert response.status_code == 200
        assert response.headers["content-length"] == "12"
        assert time.monotonic() - started < 5  # not waiting for a body
        assert http.get(f"{url}/page").content == b"hello, world"
    assert [h.split(b" ", 1)[0] for h in heads] == [b"HEAD", b"GET"]


def test_an_interim_answer_is_skipped_for_the_final_one() -> None:
    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        conn.sendall(
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal"
        )

    with through_proxy(answer) as (http, url, _, _):
        response = http.get(f"{url}/hints")
    assert response.status_code == 200
    assert response.headers["x-final"] == "yes"
    assert "link" not in response.headers
    assert response.content == b"final"


def test_a_kept_connection_the_upstream_closes_as_it_is_reused_is_retried() -> None:
    """The upstream keeps each connection alive for one answer, then closes it
    just as the next request arrives (its keep-alive timeout running out at that
    moment): an idempotent request is sent again on a new connection, a POST is
    not (it may have been acted upon)."""
    served: dict[int, int] = {}

    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        served[id(conn)] = served.get(id(conn), 0) + 1
        if served[id(conn)] > 1:
            conn.close()
            return None
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return None

    with through_proxy(answer) as (http, url, recorder, heads):
        for _ in range(3):
            response = http.get(f"{url}/kept")
            assert (response.status_code, response.content) == (200, b"ok")
        assert recorder.errors == []
        assert http.post(f"{url}/form").status_code == 502
    assert len(heads) == 6  # three GETs answered, two refused on a reused connection, one POST
    assert recorder.errors == ["upstream_reset"]


def test_keep_alive_connections_are_reused() -> None:
    accepted: list[int] = []

    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        if conn.fileno() not in accepted:
            accepted.append(conn.fileno())
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with through_proxy(answer) as (http, url, _, heads):
        for _ in range(5):
            assert http.get(f"{url}/again").content == b"ok"
    assert len(heads) == 5
    assert len(accepted) == 1


def test_a_connection_idle_past_the_limit_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """One kept longer than IDLE_LIMIT may be one the upstream is about to close."""
    monkeypatch.setattr(upstream, "IDLE_LIMIT", 0.3)
    accepted: set[int] = set()

    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        accepted.add(id(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return None

    with through_proxy(answer) as (http, url, _, heads):
        assert http.get(f"{url}/a").content == b"ok"
        assert http.get(f"{url}/b").content == b"ok"  # at once: the same connection
        assert len(accepted) == 1
        time.sleep(0.6)
        assert http.get(f"{url}/c").content == b"ok"  # idle too long: a new one
    assert len(heads) == 3
    assert len(accepted) == 2


def test_waiting_for_a_free_connection_is_bounded_by_the_pool_timeout() -> None:
    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        if b"/slow" in head:
            time.sleep(2)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    options = {"max_connections": 1, "pool_timeout": 0.3}
    with through_proxy(answer, **options) as (http, url, recorder, _):
        slow: list[int] = []
        thread = threading.Thread(
            target=lambda: slow.append(httpx2.get(f"{url}/slow", timeout=30).status_code)
        )
        thread.start()
        time.sleep(0.5)  # the one connection is busy with /slow
        waited = http.get(f"{url}/other")
        thread.join()
    assert waited.status_code == 504
    assert slow == [200]
    assert recorder.errors == ["upstream_timeout"]


def test_a_chunked_upload_is_sent_chunked_and_arrives_whole() -> None:
    received: list[bytes] = []

    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        data = rest
        while not data.endswith(b"0\r\n\r\n"):
            data += conn.recv(65536)
        received.append(data)
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        return b""

    def pieces() -> Iterator[bytes]:
        for index in range(5):
            yield f"piece {index};".encode()

    with through_proxy(answer) as (http, url, _, heads):
        response = http.post(f"{url}/upload", content=pieces())
    assert response.status_code == 201
    assert b"transfer-encoding: chunked" in heads[0].lower()
    decoded = b"".join(
        line for index, line in enumerate(received[0].split(b"\r\n")) if index % 2 == 1
    )
    assert decoded == b"piece 0;piece 1;piece 2;piece 3;piece 4;"


def test_a_malformed_answer_is_a_502_page() -> None:
    def answer(conn: socket.socket, head: bytes, rest: bytes) -> bytes | None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")

    with through_proxy(answer) as (http, url, recorder, _):
        response = http.get(f"{url}/broken")
    assert response.status_code == 502
    assert "Traceback" not in response.text
    assert recorder.errors == ["upstream_reset"]


def test_an_https_upstream_is_verified_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS to the upstream, with the certificate checked against the trust store
    (here a self-signed one the test trusts through SSL_CERT_FILE)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"over tls"})

    with serve(site, ssl_keyfile=str(key), ssl_certfile=str(cert)) as plain_url:
        target = plain_url.replace("http://", "https://")
        with proxy_to(target) as (url, recorder), client() as http:
            # Not trusted yet: the certificate is refused, a 502 page.
            assert http.get(f"{url}/page").status_code == 502
            assert recorder.errors == ["upstream_connect"]
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with proxy_to(target) as (url, recorder), client() as http:
            response = http.get(f"{url}/page")
    assert (response.status_code, response.content) == (200, b"over tls")
    assert recorder.errors == []
