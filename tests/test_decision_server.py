"""deterrence.decision_server, the builtin server of ``deterrence authz``, spoken to
over real sockets: keep-alive, pipelining, bad and oversized requests, HEAD,
streamed answers, app failures, idle connections and the lifespan. What it
answers for each proxy is test_authz.py's (run on it too)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from gateway_support import BLOCK_TERM, write_lists
from live_uvicorn import serve_builtin
from starlette.types import Receive, Scope, Send

from deterrence.authz import AuthzApp
from deterrence.settings import Settings


def decision(uri: str, *, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"GET /nginx HTTP/1.1\r\nHost: deterrence\r\nX-Original-URI: "
        + uri.encode()
        + b"\r\n"
        + connection
        + b"\r\n"
    )


def read_answers(sock: socket.socket, count: int, timeout: float = 10) -> list[bytes]:
    """``count`` whole answers (heads with their content-length bodies)."""
    sock.settimeout(timeout)
    data = b""
    answers: list[bytes] = []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            end = head_end + 4 + length
            if len(data) >= end:
                answers.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return answers


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def connect(base: str) -> socket.socket:
    address = urlsplit(base)
    return socket.create_connection((address.hostname or "", address.port or 80), timeout=10)


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.fixture(scope="module")
def authz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("decision-server")
    settings = Settings(
        lists=[write_lists(tmp / "lists")], data_dir=tmp / "data", store_enabled=False
    )
    with serve_builtin(AuthzApp(settings), keep_alive=60) as base:
        yield base


def test_answers_on_one_connection_come_in_order_even_pipelined(authz: str) -> None:
    with connect(authz) as sock:
        seen = "/search?q=pipelined+harbour+lights"
        sock.sendall(decision(seen))
        assert [status(a) for a in read_answers(sock, 1)] == [200]
        # A first sight (the full decision, on a task), a repeat (answered at once
        # from the memo), a block (a task again) and the repeat: all in one write.
        sock.sendall(
            decision("/search?q=first+sight+of+this")
            + decision(seen)
            + decision(f"/search?q={BLOCK_TERM}")
            + decision(seen)
        )
        answers = read_answers(sock, 4)
        assert [status(a) for a in answers] == [200, 200, 403, 200]
        assert b"deterrence-variant:" in answers[2].lower()
        sock.sendall(decision("/search?q=still+open"))  # keep-alive: the same connection
        assert [status(a) for a in read_answers(sock, 1)] == [200]


def test_a_malformed_request_gets_400_with_the_privacy_headers_and_is_hung_up(
    authz: str,
) -> None:
    with connect(authz) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        answer = read_answers(sock, 1)[0]
        assert status(answer) == 400
        head = answer.lower()
        assert b"x-content-type-options: nosniff" in head
        assert b"content-security-policy:" in head
        assert b"connection: close" in head
        assert closed_by_server(sock)
    with connect(authz) as sock:  # and the server goes on serving
        sock.sendall(decision("/search?q=after+the+garbage", close=True))
        assert status(read_answers(sock, 1)[0]) == 200


def test_an_oversized_body_gets_413(tmp_path: Path) -> None:
    app = AuthzApp(
        Settings(lists=[write_lists(tmp_path / "lists")], data_dir=tmp_path, store_enabled=False)
    )
    with serve_builtin(app, max_body=1000) as base, connect(base) as sock:
        sock.sendall(
            b"POST /envoy/search HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000
        )
        assert status(read_answers(sock, 1)[0]) == 413
        assert closed_by_server(sock)


def test_head_gets_the_length_without_the_body(authz: str) -> None:
    with httpx2.Client(trust_env=False, timeout=10) as http:
        page = http.get(f"{authz}/_deterrence/warning?v=legal")
        head = http.head(f"{authz}/_deterrence/warning?v=legal")
    assert page.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(page.content))


def test_a_streamed_answer_is_chunked_and_a_failing_app_gets_500() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fail":
            raise RuntimeError("a bug in the app")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"zor", b"bl", b"ax"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with serve_builtin(app) as base, httpx2.Client(trust_env=False, timeout=10) as http:
        streamed = http.get(f"{base}/stream")
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.content == b"zorblax"
        failed = http.get(f"{base}/fail")
        assert failed.status_code == 500
        assert b"a bug" not in failed.content
        assert http.get(f"{base}/stream").content == b"zorblax"  # still serving


def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    app = AuthzApp(
        Settings(lists=[write_lists(tmp_path / "lists")], data_dir=tmp_path, store_enabled=False)
    )
    with serve_builtin(app, keep_alive=0.3) as base, connect(base) as sock:
        sock.sendall(decision("/search?q=idle+then+gone"))
        assert status(read_answers(sock, 1)[0]) == 200
        started = time.monotonic()
        assert closed_by_server(sock, timeout=5)
        assert time.monotonic() - started < 3


def test_the_lifespan_runs_at_start_and_at_stop() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with serve_builtin(app) as base:
        assert events == ["lifespan.startup"]
        assert httpx2.get(base, trust_env=False).status_code == 204
    assert events == ["lifespan.startup", "lifespan.shutdown"]
