"""Servers for the proxy, decision-service and deploy-config tests: uvicorn in a
thread, real programs (nginx, Caddy, Envoy, Traefik, ``deterrence``) as child
processes, and a site that records what reached it. Everything binds 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import live_uvicorn
import pytest
from live_uvicorn import metric
from starlette.types import Receive, Scope, Send

free_port = live_uvicorn.free_port
REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# An invented block term and an invented warn term (never real search terms).
BLOCK_TERM = "zorblax"
WARN_TERM = "quendrific"


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """A real uvicorn server; ``proxy_headers`` is off as in ``deterrence proxy``, so
    uvicorn does not rewrite the client address from X-Forwarded-For itself."""
    with live_uvicorn.serve(app, **{"proxy_headers": False, **config}) as url:
        yield url


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextmanager
def run_process(
    args: Sequence[str | os.PathLike[str]],
    *,
    ports: Sequence[int],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a program, wait until it listens on every port, stop it afterwards."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(a) for a in args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        try:
            for port in ports:
                wait_for_port(port, process)
        except RuntimeError as exc:
            process.kill()
            process.wait()
            raise RuntimeError(f"{exc}\n--- {log.name} ---\n{log.read_text()[-3000:]}") from exc
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def require_program(name: str, *candidates: str | Path) -> Path:
    """The program's path. Missing: skipped locally, a failure when CI is set."""
    for candidate in (*candidates, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    message = f"{name} is not installed (see deploy/README.md for how the tests get it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def write_lists(folder: Path) -> Path:
    """A block list and a warn list of invented words; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test-block.toml").write_text(
        f'id = "test-block"\ncategory = "test"\naction = "block"\nterms = ["{BLOCK_TERM}"]\n'
    )
    (folder / "test-warn.toml").write_text(
        f'id = "test-warn"\ncategory = "test"\naction = "warn"\nterms = ["{WARN_TERM}"]\n'
    )
    return folder


def deterrence_env(tmp: Path) -> dict[str, str]:
    """Environment for a ``deterrence`` child process: temp data dir, store off."""
    return {
        "DETERRENCE_DATA_DIR": str(tmp / "data"),
        "DETERRENCE_STORE_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class RecordingSite:
    """The site behind a proxy: answers every request with what it saw, as JSON,
    and keeps the list of requests (method, raw target, headers)."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        seen = {
            "method": scope["method"],
            "target": target,
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        }
        self.requests.append(seen)
        body = json.dumps({"site": True, **seen}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def targets(self) -> list[str]:
        return [r["target"] for r in self.requests]


def python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


PRIVACY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def assert_warning_page(response: httpx2.Response) -> None:
    """The warning page, with its privacy headers (DESIGN §6), not the site's answer."""
    assert response.headers["content-type"].startswith("text/html"), response.text[:300]
    for name, value in PRIVACY_HEADERS.items():
        assert response.headers[name] == value
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-robots-tag"].startswith("noindex")
    assert "set-cookie" not in response.headers
    assert "<html" in response.text
    assert BLOCK_TERM not in response.text


def assert_error_page(response: httpx2.Response, status: int) -> None:
    """A page deterrence answers itself (a search too long to inspect, or the proxy's
    upstream failed), with the privacy headers of DESIGN §6, saying nothing of the query."""
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    for name, value in PRIVACY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["x-robots-tag"].startswith("noindex")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "set-cookie" not in response.headers
    assert "Traceback" not in response.text
    assert "<h1>" in response.text
    assert BLOCK_TERM not in response.text


def decisions(authz: str) -> float:
    """How many requests the decision service at ``authz`` has been asked about."""
    return metric(authz, "deterrence_requests_inspected_total")


@contextmanager
def authz_process(tmp: Path, *extra: str) -> Iterator[str]:
    """A real ``deterrence authz`` with the invented lists; yields its base URL."""
    port = free_port()
    lists = write_lists(tmp / "lists")
    with run_process(
        [
            *python_command("deterrence", "authz"),
            "--port",
            str(port),
            "--lists",
            str(lists),
            *extra,
        ],
        ports=[port],
        log=tmp / f"authz-{port}.log",
        env=deterrence_env(tmp),
        cwd=REPO,
    ):
        yield f"http://127.0.0.1:{port}"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def raw_get(base: str, target: str) -> tuple[int, str]:
    """GET ``target`` exactly as written (HTTP clients would resolve ``..`` first)."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=10)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


@contextmanager
def listening(handle: Callable[[socket.socket], None], held: list[socket.socket]) -> Iterator[str]:
    """A TCP listener on loopback that hands each connection it accepts to
    ``handle``, in turn, on one thread; yields its URL. The sockets in ``held``
    are closed at the end."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)  # so that the loop sees stop
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            handle(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


@contextmanager
def raw_upstream(behaviour: str) -> Iterator[str]:
    """A one-connection-at-a-time TCP server that misbehaves on purpose:
    ``reset`` reads the request and resets the connection; ``reset-mid-body`` starts
    a response and resets half-way; ``never-read`` accepts and then does nothing."""
    held: list[socket.socket] = []

    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def misbehave(conn: socket.socket) -> None:
        if behaviour == "never-read":
            held.append(conn)
            return
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        if behaviour == "reset-mid-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"y" * 1000)
            time.sleep(0.3)
        reset(conn)

    with listening(misbehave, held) as url:
        yield url


def assert_too_long_searches_get_the_414_page(
    http: httpx2.Client, url: str, site: RecordingSite
) -> None:
    """Padding past max_query_chars (1024) hides nothing: a term after the cap and an
    innocent long search alike get the 414 page, and neither reaches the site."""
    seen = len(site.requests)
    for query in ("keepers+" * 150 + BLOCK_TERM, "lighthouse" + "+keepers" * 150):
        assert_error_page(http.get(f"{url}/search?q={query}"), 414)
    assert len(site.requests) == seen
