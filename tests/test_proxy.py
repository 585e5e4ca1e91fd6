"""The reverse proxy against a real upstream: both run as real uvicorn servers on
127.0.0.1, and faults the upstream cannot be asked to make politely (resets, a peer
that never reads) come from small raw-socket servers."""

from __future__ import annotations

import asyncio
import gzip
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx2
import pytest
from gateway_support import (
    BLOCK_TERM,
    REPO,
    WARN_TERM,
    RecordingSite,
    assert_error_page,
    assert_warning_page,
    deterrence_env,
    free_port,
    python_command,
    raw_upstream,
    run_process,
    serve,
    write_lists,
)
from starlette.types import Receive, Scope, Send

from deterrence.proxy import ProxyApp, TrustedProxies

MB = 1024 * 1024
CHUNK = b"z" * (64 * 1024)


# --- servers -----------------------------------------------------------------------


class Upstream:
    """The site behind the proxy; remembers what it saw."""

    def __init__(self) -> None:
        self.big_finished = threading.Event()
        self.upload_first_chunk_at: float | None = None
        self.gzip_body = gzip.compress(b"compressible search results " * 2000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/big":
            await self.big(scope, send)
        elif path == "/upload":
            await self.upload(receive, send)
        elif path == "/gzip":
            headers = [(b"content-type", b"text/plain"), (b"content-encoding", b"gzip")]
            await respond(send, self.gzip_body, headers=headers)
        elif path == "/login":
            await respond(send, b"hi", headers=[(b"set-cookie", b"session=secret-a; Path=/")])
        elif path == "/slow":
            await asyncio.sleep(3)
            await respond(send, b"late")
        elif path == "/slow-body":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await asyncio.sleep(3)
            await send({"type": "http.response.body", "body": b"late"})
        elif path == "/hop":
            headers = [
                (b"connection", b"x-upstream-hop"),
                (b"x-upstream-hop", b"1"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-authenticate", b"Basic"),
                (b"trailer", b"x-checksum"),
                (b"x-end-to-end", b"kept"),
            ]
            await respond(send, b"hop", headers=headers)
        elif path == "/redirect":
            location = f"http://{header(scope, b'host')}/landed?x=1".encode()
            await respond(send, b"", status=302, headers=[(b"location", location)])
        else:
            await self.echo(scope, receive, send)

    async def echo(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        seen = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "client_port": scope["client"][1],
            "body_bytes": size,
        }
        await respond(
            send, json.dumps(seen).encode(), headers=[(b"content-type", b"application/json")]
        )

    async def big(self, scope: Scope, send: Send) -> None:
        megabytes = int(scope["query_string"].decode().partition("=")[2] or 50)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(megabytes * MB // len(CHUNK)):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        self.big_finished.set()

    async def upload(self, receive: Receive, send: Send) -> None:
        size = 0
        while True:
            message = await receive()
            if message.get("body") and self.upload_first_chunk_at is None:
                self.upload_first_chunk_at = time.monotonic()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await respond(send, str(size).encode())


def header(scope: Scope, name: bytes) -> str:
    return next(v.decode() for k, v in scope["headers"] if k == name)


async def respond(
    send: Send, body: bytes, *, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Recorder:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, kind: str) -> None:
        self.errors.append(kind)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with serve(app) as url:
        yield app, url


@contextmanager
def proxy_to(target: str, **options: Any) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    app = ProxyApp(target, recorder=recorder, **options)
    with serve(app) as url:
        yield url, recorder


@pytest.fixture(scope="module")
def proxy(upstream: tuple[Upstream, str]) -> Iterator[str]:
    with proxy_to(upstream[1]) as (url, _):
        yield url


def client() -> httpx2.Client:
    return httpx2.Client(trust_env=False, timeout=30)


def seen_headers(response: httpx2.Response) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in response.json()["headers"]:
        result.setdefault(key, []).append(value)
    return result


# --- trust ---------------------------------------------------------------------------


def test_trusted_proxies_accept_addresses_networks_and_star() -> None:
    trusted = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])
    assert "127.0.0.1" in trusted
    assert "10.20.30.40" in trusted
    assert "::1" in trusted
    assert "127.0.0.2" not in trusted
    assert "not-an-address" not in trusted
    assert None not in trusted
    assert "192.0.2.1" in TrustedProxies(["*"])


# --- forwarding ------------------------------------------------------------------------


def test_request_arrives_unchanged_with_method_path_query_and_body(proxy: str) -> None:
    with client() as http:
        response = http.post(
            f"{proxy}/a%2Fb/c%20d?q=one+two&q=%C3%A9&empty=",
            content=b"x" * 1234,
            headers={"Content-Type": "application/octet-stream", "X-Custom": "kept"},
        )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["raw_path"] == "/a%2Fb/c%20d"
    assert seen["query_string"] == "q=one+two&q=%C3%A9&empty="
    assert seen["body_bytes"] == 1234
    headers = seen_headers(response)
    assert headers["x-custom"] == ["kept"]
    assert headers["content-type"] == ["application/octet-stream"]


def test_host_is_the_upstream_and_the_public_host_is_forwarded(
    upstream: tuple[Upstream, str], proxy: str
) -> None:
    with client() as http:
        response = http.get(f"{proxy}/echo", headers={"Host": "search.example"})
    headers = seen_headers(response)
    assert headers["host"] == [upstream[1].removeprefix("http://")]
    assert headers["x-forwarded-host"] == ["search.example"]
    assert headers["x-forwarded-proto"] == ["http"]


def test_preserve_host_sends_the_public_host(upstream: tuple[Upstream, str]) -> None:
    with proxy_to(upstream[1], preserve_host=True) as (url, _), client() as http:
        response = http.get(f"{url}/echo", headers={"Host": "search.example"})
    assert seen_headers(response)["host"] == ["search.example"]


def test_client_headers_are_not_supplemented(proxy: str) -> None:
    """No Accept-Encoding, User-Agent or Accept of the proxy's own reaches the upstream."""
    with socket.create_connection(("127.0.0.1", int(proxy.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: bare.example\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    seen = json.loads(raw.partition(b"\r\n\r\n")[2])
    names = {key for key, _ in seen["headers"]}
    assert names == {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}


def test_non_ascii_target_is_percent_encoded_not_mangled() -> None:
    """uvicorn refuses such targets itself; other ASGI servers may pass them on."""
    app = ProxyApp("http://127.0.0.1:9/base/")
    scope = {
        "type": "http",
        "path": "/café/A",
        "raw_path": b"/caf\xc3\xa9/%41",
        "query_string": b"q=\xc3\xa9t\xc3\xa9&x=%2B",
    }
    assert app._target(scope) == "/base/caf%C3%A9/%41?q=%C3%A9t%C3%A9&x=%2B"


def test_hop_by_hop_request_headers_are_removed(proxy: str) -> None:
    with client() as http:
        response = http.get(
            f"{proxy}/echo",
            headers={
                "Connection": "keep-alive, X-Client-Hop",
                "X-Client-Hop": "secret",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Trailer": "x-sum",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "Proxy-Connection": "keep-alive",
                "X-End-To-End": "kept",
            },
        )
    headers = seen_headers(response)
    for name in ("x-client-hop", "keep-alive", "te", "trailer", "proxy-authorization"):
        assert name not in headers, name
    assert "proxy-connection" not in headers
    assert headers.get("connection", []) in ([], ["keep-alive"])  # the proxy's own hop
    assert headers["x-end-to-end"] == ["kept"]


def test_hop_by_hop_response_headers_are_removed(proxy: str) -> None:
    with client() as http:
        response = http.get(f"{proxy}/hop")
    assert response.text == "hop"
    for name in ("x-upstream-hop", "keep-alive", "proxy-authenticate", "trailer"):
        assert name not in response.headers, name
    assert response.headers["x-end-to-end"] == "kept"


def test_upstream_redirect_to_itself_becomes_a_path(proxy: str) -> None:
    with client() as http:
        response = http.get(f"{proxy}/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/landed?x=1"


def test_connections_to_the_upstream_are_reused(proxy: str) -> None:
    with client() as http:
        ports = {http.get(f"{proxy}/echo").json()["client_port"] for _ in range(5)}
    assert len(ports) == 1


# --- X-Forwarded-* trust ------------------------------------------------------------


def test_untrusted_client_forwarded_headers_are_replaced(upstream: tuple[Upstream, str]) -> None:
    with proxy_to(upstream[1], trusted_proxies=["10.0.0.0/8"]) as (url, _), client() as http:
        response = http.get(
            f"{url}/echo",
            headers={
                "Host": "public.example",
                "X-Forwarded-For": "203.0.113.7",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "spoofed.example",
                "X-Forwarded-Prefix": "/spoofed",
                "Forwarded": "for=203.0.113.7",
            },
        )
    headers = seen_headers(response)
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == ["public.example"]
    assert "x-forwarded-prefix" not in headers
    assert "forwarded" not in headers


def test_trusted_proxy_forwarded_headers_are_extended(upstream: tuple[Upstream, str]) -> None:
    with proxy_to(upstream[1], trusted_proxies=["127.0.0.0/8"]) as (url, _), client() as http:
        response = http.get(
            f"{url}/echo",
            headers={
                "Host": "internal.example",
                "X-Forwarded-For": "203.0.113.7, 198.51.100.2",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "public.example",
            },
        )
    headers = seen_headers(response)
    assert headers["x-forwarded-for"] == ["203.0.113.7, 198.51.100.2, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["https"]
    assert headers["x-forwarded-host"] == ["public.example"]


# --- bodies ------------------------------------------------------------------------------


def test_large_download_streams_before_the_upstream_finishes(
    upstream: tuple[Upstream, str], proxy: str
) -> None:
    app, _ = upstream
    app.big_finished.clear()
    with client() as http, http.stream("GET", f"{proxy}/big?mb=50") as response:
        chunks = response.iter_raw()
        first = next(chunks)
        # 50 MB cannot fit in socket buffers: if the proxy buffered the body, the
        # upstream would have finished before the first byte reached us.
        assert first
        assert not app.big_finished.is_set()
        total = len(first) + sum(len(chunk) for chunk in chunks)
    assert total == 50 * MB
    assert app.big_finished.wait(5)


def test_large_upload_streams_before_the_client_finishes(
    upstream: tuple[Upstream, str], proxy: str
) -> None:
    app, _ = upstream
    app.upload_first_chunk_at = None
    finished_sending: list[float] = []

    def body() -> Iterator[bytes]:
        for _ in range(50 * MB // len(CHUNK)):
            yield CHUNK
        finished_sending.append(time.monotonic())

    with client() as http:
        response = http.post(f"{proxy}/upload", content=body())  # chunked, no length
    assert response.text == str(50 * MB)
    assert app.upload_first_chunk_at is not None
    assert app.upload_first_chunk_at < finished_sending[0]


def test_gzip_passes_through_undecoded(upstream: tuple[Upstream, str], proxy: str) -> None:
    with client() as http:
        with http.stream("GET", f"{proxy}/gzip", headers={"Accept-Encoding": "gzip"}) as response:
            raw = b"".join(response.iter_raw())
        echoed = http.get(f"{proxy}/echo", headers={"Accept-Encoding": "gzip, br"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == len(upstream[0].gzip_body)
    assert raw == upstream[0].gzip_body  # the compressed bytes, not decoded and re-encoded
    assert seen_headers(echoed)["accept-encoding"] == ["gzip, br"]


# --- cookies ---------------------------------------------------------------------------


def test_cookies_are_never_shared_between_clients(proxy: str) -> None:
    with client() as alice, client() as bob:
        login = alice.get(f"{proxy}/login")
        assert login.headers["set-cookie"].startswith("session=secret-a")
        alice_seen = seen_headers(alice.get(f"{proxy}/echo"))
        bob_seen = seen_headers(bob.get(f"{proxy}/echo"))
    assert alice_seen["cookie"] == ["session=secret-a"]
    assert "cookie" not in bob_seen


# --- failures --------------------------------------------------------------------------


def test_upstream_down_is_a_502_page() -> None:
    with proxy_to(f"http://127.0.0.1:{free_port()}") as (url, recorder), client() as http:
        response = http.get(f"{url}/search?q=anything")
    assert_error_page(response, 502)
    assert "anything" not in response.text
    assert recorder.errors == ["upstream_connect"]


def test_slow_upstream_is_a_504_page(upstream: tuple[Upstream, str]) -> None:
    with proxy_to(upstream[1], read_timeout=0.5) as (url, recorder), client() as http:
        started = time.monotonic()
        response = http.get(f"{url}/slow")
        elapsed = time.monotonic() - started
    assert_error_page(response, 504)
    assert elapsed < 2.5
    assert recorder.errors == ["upstream_timeout"]


def test_upstream_silent_mid_body_cuts_the_response(upstream: tuple[Upstream, str]) -> None:
    with (
        proxy_to(upstream[1], read_timeout=0.5) as (url, recorder),
        client() as http,
        pytest.raises(httpx2.HTTPError),  # an incomplete chunked body
    ):
        http.get(f"{url}/slow-body")
    assert recorder.errors == ["upstream_timeout"]


def test_upstream_reset_is_a_502_page() -> None:
    with raw_upstream("reset") as target, proxy_to(target) as (url, recorder), client() as http:
        response = http.get(f"{url}/anything")
    assert_error_page(response, 502)
    assert recorder.errors == ["upstream_reset"]


def test_upstream_reset_mid_body_cuts_the_response() -> None:
    with (
        raw_upstream("reset-mid-body") as target,
        proxy_to(target) as (url, recorder),
        client() as http,
        pytest.raises(httpx2.HTTPError),
    ):
        http.get(f"{url}/anything")
    deadline = time.monotonic() + 5
    while not recorder.errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.errors == ["upstream_reset"]


def test_upstream_that_never_reads_the_body_is_a_504() -> None:
    """An upstream that neither reads the body nor answers: the write timeout fires."""
    with (
        raw_upstream("never-read") as target,
        proxy_to(target, write_timeout=1.0, read_timeout=30) as (url, recorder),
    ):
        port = int(url.rsplit(":", 1)[1])
        total = 200 * MB
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.send(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode())
        received = b""
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < 20 and b"\r\n\r\n" not in received:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.1)
            if readable:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
            elif writable:
                with suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                    sent += sock.send(CHUNK)
        sock.close()
    assert received.startswith(b"HTTP/1.1 504 "), received[:200]
    assert sent < total
    assert recorder.errors == ["upstream_timeout"]


# --- the `deterrence proxy` command ------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextmanager
def proxy_command(tmp: Path, upstream_url: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    lists = write_lists(tmp / "lists")
    command = python_command(
        "deterrence",
        "proxy",
        "--upstream",
        upstream_url,
        "--port",
        str(port),
        "--lists",
        str(lists),
    )
    with run_process(
        command, ports=[port], log=tmp / "proxy.log", env=deterrence_env(tmp), cwd=REPO
    ) as process:
        yield f"http://127.0.0.1:{port}", process.pid


def test_proxy_command_checks_searches_and_forwards_the_rest(tmp_path: Path) -> None:
    site = RecordingSite()
    with serve(site) as site_url, proxy_command(tmp_path, site_url) as (url, _), client() as http:
        innocent = http.get(f"{url}/search?q=tea", headers={"Deterrence-Action": "warn"})
        blocked = http.get(f"{url}/search?q=%257Aorblax")
        warned = http.get(f"{url}/search?q={WARN_TERM}")
        other = http.get(f"{url}/about?q={BLOCK_TERM}")
        metrics = http.get(f"{url}/metrics").text
    assert innocent.json()["target"] == "/search?q=tea"
    assert "deterrence-action" not in innocent.json()["headers"]  # a client cannot say it
    assert_warning_page(blocked)
    assert warned.json()["headers"]["deterrence-action"] == "warn"
    assert other.json()["target"] == f"/about?q={BLOCK_TERM}"  # not a search path
    assert site.targets() == ["/search?q=tea", f"/search?q={WARN_TERM}", f"/about?q={BLOCK_TERM}"]
    assert 'deterrence_requests_inspected_total{route="/search"} 3.0' in metrics
    access_log = [
        line for line in (tmp_path / "proxy.log").read_text().splitlines() if "GET" in line
    ]
    searches = [line for line in access_log if "/search" in line]
    assert len(searches) == 3  # logged, redacted
    for line in searches:
        assert "zorblax" not in line and "257A" not in line and WARN_TERM not in line
        assert "tea" not in line


def test_proxy_command_never_forwards_a_search_it_could_not_inspect(tmp_path: Path) -> None:
    """Too long to inspect whole: 414 (query) or 413 (body), from the proxy itself. An
    OPTIONS search is checked; only a CORS preflight is forwarded unchecked."""
    site = RecordingSite()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"}
    with serve(site) as site_url, proxy_command(tmp_path, site_url) as (url, _), client() as http:
        long_query = http.get(f"{url}/search?q=" + "tea+" * 300 + BLOCK_TERM)
        long_value = http.post(f"{url}/search", content="q=" + "tea+" * 300, headers=form)
        huge_body = http.post(f"{url}/search", content=b"q=tea&x=" + b"x" * MB, headers=form)
        options = http.options(f"{url}/search?q={BLOCK_TERM}")
        passed = http.options(f"{url}/search?q={BLOCK_TERM}", headers=preflight)
    assert_error_page(long_query, 414)
    assert_error_page(long_value, 413)
    assert_error_page(huge_body, 413)
    assert_warning_page(options)
    assert passed.json()["method"] == "OPTIONS"
    assert site.targets() == [f"/search?q={BLOCK_TERM}"]  # the preflight alone


def test_proxy_app_works_without_lifespan_and_closes_its_pool_on_shutdown(
    upstream: tuple[Upstream, str],
) -> None:
    app = ProxyApp(upstream[1])
    with serve(app, lifespan="off") as url, client() as http:
        assert http.get(f"{url}/echo").status_code == 200  # pool opened by the request
        assert app._pool is not None
    app = ProxyApp(upstream[1])
    with serve(app, lifespan="on") as url:
        assert app._pool is not None  # opened at startup
        with client() as http:
            assert http.get(f"{url}/echo").status_code == 200
    assert app._pool is None  # closed at shutdown


def test_proxy_command_counts_upstream_failures(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with proxy_command(tmp_path, dead) as (url, _), client() as http:
        response = http.get(f"{url}/anything")
        metrics = http.get(f"{url}/metrics").text
    assert_error_page(response, 502)
    assert 'deterrence_errors_total{kind="upstream_connect"} 1.0' in metrics


def test_proxy_command_memory_stays_flat_while_streaming(
    upstream: tuple[Upstream, str], tmp_path: Path
) -> None:
    """100 MB down and 100 MB up through the proxy process: its memory must not grow
    with the bodies (it would by at least their size if it buffered them)."""
    with proxy_command(tmp_path, upstream[1]) as (url, pid), client() as http:
        for _ in range(20):
            http.get(f"{url}/echo")
        with http.stream("GET", f"{url}/big?mb=5") as response:
            for _ in response.iter_raw():
                pass
        before = rss_bytes(pid)
        peak = before
        for _ in range(2):
            with http.stream("GET", f"{url}/big?mb=50") as response:
                for index, _ in enumerate(response.iter_raw()):
                    if index % 64 == 0:
                        peak = max(peak, rss_bytes(pid))
            body = (CHUNK for _ in range(50 * MB // len(CHUNK)))
            assert http.post(f"{url}/upload", content=body).text == str(50 * MB)
            peak = max(peak, rss_bytes(pid))
    print(f"proxy RSS {before / MB:.1f} MB, peak {peak / MB:.1f} MB")
    assert peak - before < 20 * MB, f"RSS grew by {(peak - before) / MB:.1f} MB"
