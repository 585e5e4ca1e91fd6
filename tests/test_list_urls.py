"""List URLs (deterrence.remote_lists) on real servers: HTTPS with a private CA the
operator trusts through ``SSL_CERT_FILE``, certificates that must be refused, an
https→http redirect, every reload trigger fetching them, and a list cache that cannot
be written (a full or read-only tmpfs as the data directory).

test_reload.py has the rest: conditional polling, pins, broken bodies, a restart
without network. Every term here is invented.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from list_server import CertificateAuthority, ListServer
from live_uvicorn import free_port, metric, serve, wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tmpfs_support import fill, tmpfs

from deterrence import DeterrenceMiddleware, Settings, cli, remote_lists
from deterrence.lists import ListError
from deterrence.reload import MatcherHolder

TOKEN = "list-url-test-token"


def app() -> Starlette:
    async def search(request: Request) -> PlainTextResponse:
        return PlainTextResponse("results")

    return Starlette(routes=[Route("/search", search)])


def blocked(base: str, query: str) -> bool:
    response = httpx2.get(f"{base}/search", params={"q": query}, timeout=10)
    assert response.status_code in (200, 451)
    return response.status_code == 451


def admin_reload(base: str) -> httpx2.Response:
    return httpx2.post(
        f"{base}/_deterrence/admin/reload",
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "lists"
    directory.mkdir()
    text = 'id = "local"\ncategory = "testing"\nterms = ["zorblax"]\n'
    (directory / "local.toml").write_text(text)
    return directory


@pytest.fixture
def list_server() -> Iterator[ListServer]:
    server = ListServer()
    yield server
    server.close()


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki", "fleet")


def settings_for(url: str, data_dir: Path, lists_dir: Path, **extra: Any) -> Settings:
    """No polling of the URLs: the tests say when they are fetched."""
    options: dict[str, Any] = {
        "lists": [lists_dir],
        "list_urls": [url],
        "data_dir": data_dir,
        "admin_token": TOKEN,
        "block_status": 451,
        "list_urls_poll_seconds": 0,
        **extra,
    }
    return Settings(**options)


# --- HTTPS ---------------------------------------------------------------------------------


def test_https_list_urls_trust_a_private_ca_and_refuse_other_certificates(
    ca: CertificateAuthority,
    tmp_path: Path,
    lists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))  # how an operator trusts their CA
    good = ca.issue("lists")
    tls = good.context()
    server = ListServer(tls)
    try:
        server.publish(["vexmorrow"])
        settings = settings_for(f"{server.base}/fleet.toml", tmp_path / "data", lists_dir)
        with serve(DeterrenceMiddleware(app(), settings)) as base:
            assert blocked(base, "vexmorrow")
            server.publish(["vexmorrow", "plimsquark"])
            impostors = [
                (CertificateAuthority(tmp_path / "pki", "other").issue("impostor"), "issuer"),
                (ca.issue("misnamed", san="DNS:lists.example.invalid"), "mismatch"),
            ]
            for certificate, reason in impostors:
                tls.load_cert_chain(certificate.cert, certificate.key)
                response = admin_reload(base)
                assert response.status_code == 422
                error = response.json()["error"]
                assert "CERTIFICATE_VERIFY_FAILED" in error and reason in error
                assert blocked(base, "vexmorrow") and not blocked(base, "plimsquark")
            assert metric(base, "deterrence_list_reloads_total", result="error") == 2
            # Nothing refused reached the cache: a restart would serve the last good copy.
            assert MatcherHolder(settings).matcher.match("plimsquark") is None
            tls.load_cert_chain(good.cert, good.key)
            assert admin_reload(base).status_code == 200
            assert blocked(base, "plimsquark")
    finally:
        server.close()


def test_an_https_list_url_may_not_redirect_to_http(
    ca: CertificateAuthority,
    list_server: ListServer,
    tmp_path: Path,
    lists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))
    list_server.publish(["plimsquark"])
    secure = ListServer(ca.issue("lists").context())
    try:
        secure.publish(["vexmorrow"])
        settings = settings_for(f"{secure.base}/fleet.toml", tmp_path / "data", lists_dir)
        holder = MatcherHolder(settings)
        secure.redirect_to = f"{list_server.base}/fleet.toml"
        result = holder.reload_blocking("test")
        assert result.result == "error"
        assert result.error is not None and "redirected away from https" in result.error
        assert holder.matcher.match("vexmorrow") is not None
        assert holder.matcher.match("plimsquark") is None
        assert list_server.requests == []  # never followed
        with pytest.raises(ListError, match="redirected away from https"):
            MatcherHolder(settings_for(secure.base + "/fleet.toml", tmp_path / "new", lists_dir))
    finally:
        secure.close()


# --- every trigger fetches ------------------------------------------------------------------


def test_sighup_and_the_admin_endpoint_fetch_the_list_urls(
    list_server: ListServer, tmp_path: Path, lists_dir: Path
) -> None:
    """With list URL polling off, a reload by hand is the only way a newer list
    comes in; an unchanged one costs a 304."""
    list_server.publish(["vexmorrow"])
    port = free_port()
    env = {
        **os.environ,
        "DETERRENCE_DATA_DIR": str(tmp_path / "data"),
        "DETERRENCE_BLOCK_STATUS": "451",
        "DETERRENCE_ADMIN_TOKEN": TOKEN,
        "DETERRENCE_LIST_URLS": json.dumps([f"{list_server.base}/fleet.toml"]),
        "DETERRENCE_LIST_URLS_ALLOW_HTTP": "true",
        "DETERRENCE_LIST_URLS_POLL_SECONDS": "0",
    }
    command = [sys.executable, "-m", "deterrence", "demo", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--lists", str(lists_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base, process), timeout=30)
        assert blocked(base, "vexmorrow")
        first_etag = list_server.etag
        list_server.publish(["vexmorrow", "plimsquark"])
        time.sleep(0.3)
        assert not blocked(base, "plimsquark")  # nothing polls
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: blocked(base, "plimsquark"))
        assert list_server.requests[-1]["if-none-match"] == first_etag
        list_server.publish(["vexmorrow", "plimsquark", "tozzlewick"])
        response = admin_reload(base)
        assert response.status_code == 200
        assert blocked(base, "tozzlewick")
        fetched = len(list_server.requests)
        assert admin_reload(base).status_code == 200  # unchanged: the server said 304
        assert len(list_server.requests) == fetched + 1
        assert list_server.requests[-1]["if-none-match"] == list_server.etag
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def _answers(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, process.communicate()[0].decode()
    try:
        return httpx2.get(f"{base}/metrics", timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


# --- a list cache that cannot be written ----------------------------------------------------


def test_a_refresh_that_cannot_write_the_cache_keeps_the_lists_and_counts_it(
    list_server: ListServer, tmp_path: Path, lists_dir: Path
) -> None:
    list_server.publish(["vexmorrow"])
    url = f"{list_server.base}/fleet.toml"
    with tmpfs(tmp_path / "data", "size=256k") as data_dir:
        settings = settings_for(url, data_dir, lists_dir, list_urls_allow_http=True)
        cache = remote_lists.parse_list_url(url, data_dir, allow_http=True)
        with serve(DeterrenceMiddleware(app(), settings)) as base:
            assert blocked(base, "vexmorrow")
            filler = fill(data_dir)
            list_server.publish(["vexmorrow", "plimsquark"])
            response = admin_reload(base)
            assert response.status_code == 422
            error = response.json()["error"]
            assert f"cannot write the list cache in {cache.directory}: No space left" in error
            assert metric(base, "deterrence_errors_total", kind="list_cache") == 1
            assert metric(base, "deterrence_list_reloads_total", result="error") == 1
            assert blocked(base, "vexmorrow") and not blocked(base, "plimsquark")
            files = sorted(p.name for p in cache.directory.rglob("*") if p.is_file())
            assert files == ["fleet.toml", "meta.json"]  # nothing half-written left over
            filler.unlink()  # room again: the next reload fetches and caches it
            assert admin_reload(base).status_code == 200
            assert blocked(base, "plimsquark")
            assert b"plimsquark" in cache.path.read_bytes()


def test_a_first_start_that_cannot_cache_serves_the_fetched_lists(
    tmp_path: Path, lists_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Refusing to start would serve no list at all: the lists in hand are served
    from a temporary copy, counted, and cached once the disk has room."""
    server = ListServer()
    server.publish(["vexmorrow"])
    url = f"{server.base}/fleet.toml"
    with tmpfs(tmp_path / "data", "size=256k") as data_dir:
        settings = settings_for(url, data_dir, lists_dir, list_urls_allow_http=True)
        cache = remote_lists.parse_list_url(url, data_dir, allow_http=True)
        filler = fill(data_dir)
        with caplog.at_level(logging.ERROR, "deterrence.reload"):
            middleware = DeterrenceMiddleware(app(), settings)
        assert f"cannot write the list cache in {cache.directory}" in caplog.text
        with serve(middleware) as base:
            assert blocked(base, "vexmorrow")
            assert metric(base, "deterrence_errors_total", kind="list_cache") == 1
            assert not cache.cached()
            filler.unlink()
            assert admin_reload(base).status_code == 200
            assert cache.cached()  # moved home: a restart without network finds it
            assert blocked(base, "vexmorrow")
        server.close()  # the network is gone
        assert MatcherHolder(settings).matcher.match("vexmorrow") is not None


def test_a_start_that_can_cache_nowhere_says_so_in_one_line(
    list_server: ListServer,
    tmp_path: Path,
    lists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    list_server.publish(["vexmorrow"])
    url = f"{list_server.base}/fleet.toml"
    with tmpfs(tmp_path / "read-only", "size=64k", "ro") as read_only:
        monkeypatch.setattr(tempfile, "tempdir", str(read_only))  # no temporary copy either
        monkeypatch.setenv("DETERRENCE_DATA_DIR", str(read_only))
        monkeypatch.setenv("DETERRENCE_LIST_URLS", json.dumps([url]))
        monkeypatch.setenv("DETERRENCE_LIST_URLS_ALLOW_HTTP", "true")
        status = cli.main(["demo", "--lists", str(lists_dir), "--port", str(free_port())])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    cache = remote_lists.parse_list_url(url, read_only, allow_http=True)
    assert err.startswith(f"error: {url}: cannot write the list cache in {cache.directory}: ")
    assert "Read-only file system" in err
