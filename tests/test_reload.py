"""Hot reload of term lists (deterrence.reload, deterrence.remote_lists): polling,
SIGHUP, the admin endpoint and list URLs, on real servers — and a broken or vanished
list never replaces the lists in service.

Every term here is invented.
"""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest
from list_server import ListServer
from live_uvicorn import free_port, metric, serve, wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from deterrence import DeterrenceMiddleware, Settings, pieces
from deterrence.lists import ListError
from deterrence.matcher import Matcher
from deterrence.reload import MatcherHolder

TOKEN = "reload-test-token"


def app() -> Starlette:
    async def search(request: Request) -> PlainTextResponse:
        return PlainTextResponse("results")

    return Starlette(routes=[Route("/search", search, methods=["GET", "POST"])])


def write_list(path: Path, list_id: str, terms: list[str], *, action: str = "block") -> None:
    """Write a list file the way a careful deploy does: a temporary file, then rename."""
    quoted = ", ".join(f'"{t}"' for t in terms)
    text = f'id = "{list_id}"\ncategory = "testing"\naction = "{action}"\nterms = [{quoted}]\n'
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def blocked(base: str, query: str) -> bool:
    response = httpx2.get(f"{base}/search", params={"q": query}, timeout=10)
    assert response.status_code in (200, 451)
    return response.status_code == 451


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "lists"
    directory.mkdir()
    write_list(directory / "alpha.toml", "alpha", ["zorblax"])
    write_list(directory / "beta.toml", "beta", ["quendrific"])
    return directory


def polling_middleware(lists_dir: Path, data_dir: Path, **settings: Any) -> DeterrenceMiddleware:
    """The search app behind a middleware that polls ``lists_dir`` every 50 ms and
    blocks with 451 (what :func:`blocked` reads)."""
    return DeterrenceMiddleware(
        app(),
        lists=[lists_dir],
        data_dir=data_dir,
        reload_poll_seconds=0.05,
        block_status=451,
        **settings,
    )


@pytest.fixture
def polling_server(lists_dir: Path, tmp_path: Path) -> Iterator[str]:
    with serve(polling_middleware(lists_dir, tmp_path / "data", admin_token=TOKEN)) as base:
        yield base


# --- polling -------------------------------------------------------------------------


def test_a_changed_list_goes_into_service_without_a_restart(
    polling_server: str, lists_dir: Path
) -> None:
    base = polling_server
    assert blocked(base, "zorblax") and not blocked(base, "mirvelwort")
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    wait_for(lambda: blocked(base, "mirvelwort"))
    write_list(lists_dir / "gamma.toml", "gamma", ["tozzleberry", "vornquist"])
    wait_for(lambda: blocked(base, "tozzleberry"))
    assert metric(base, "deterrence_list_reloads_total", result="ok") == 2
    assert metric(base, "deterrence_list_terms", list="gamma") == 2
    assert metric(base, "deterrence_list_terms", list="alpha") == 2
    assert metric(base, "deterrence_list_reloads_total", result="error") == 0


def test_a_broken_list_keeps_the_lists_in_service(
    polling_server: str, lists_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = polling_server
    caplog.set_level(logging.ERROR, logger="deterrence.reload")
    broken = lists_dir / "alpha.toml"
    broken.write_text('id = "alpha"\ncategory = "testing"\n\nterms = ["zorblax", mirvelwort]\n')
    wait_for(lambda: metric(base, "deterrence_list_reloads_total", result="error") == 1)
    assert blocked(base, "zorblax") and blocked(base, "quendrific")
    assert not blocked(base, "mirvelwort")
    assert metric(base, "deterrence_errors_total", kind="list_invalid") == 1
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"{broken}" in message and "line 4" in message
    time.sleep(0.3)  # several more polls: the same broken file is reported once
    assert metric(base, "deterrence_list_reloads_total", result="error") == 1
    write_list(broken, "alpha", ["zorblax", "mirvelwort"])
    wait_for(lambda: blocked(base, "mirvelwort"))
    assert metric(base, "deterrence_list_reloads_total", result="ok") == 1


def test_a_vanished_list_file_keeps_its_list_in_service(
    polling_server: str, lists_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = polling_server
    caplog.set_level(logging.ERROR, logger="deterrence.reload")
    (lists_dir / "beta.toml").unlink()
    wait_for(lambda: metric(base, "deterrence_errors_total", kind="list_missing") == 1)
    assert blocked(base, "quendrific")
    assert metric(base, "deterrence_list_reloads_total", result="error") == 1
    assert "beta.toml: list file is missing" in caplog.text
    # An explicit reload does not drop it either.
    response = httpx2.post(
        f"{base}/_deterrence/admin/reload", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 422
    assert "beta.toml: list file is missing" in response.json()["error"]
    assert blocked(base, "quendrific")


def test_touching_a_file_rebuilds_nothing_and_half_written_files_wait(
    lists_dir: Path, tmp_path: Path
) -> None:
    holder = MatcherHolder(Settings(lists=[lists_dir], data_dir=tmp_path))
    first = holder.matcher
    os.utime(lists_dir / "alpha.toml", ns=(1, 1))
    assert not holder.files_changed_blocking()  # seen once: maybe still being written
    assert holder.files_changed_blocking()  # the same twice: settled
    assert holder.reload_blocking("test", only_if_changed=True).result == "unchanged"
    assert holder.matcher is first
    assert not holder.files_changed_blocking()
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    assert not holder.files_changed_blocking()
    assert holder.files_changed_blocking()
    assert holder.reload_blocking("test", only_if_changed=True).result == "ok"
    assert holder.matcher is not first
    assert holder.matcher.match("mirvelwort") is not None


def test_a_request_is_matched_against_one_list_set(lists_dir: Path, tmp_path: Path) -> None:
    """The swap is one assignment: a matcher once taken keeps working after a reload."""
    holder = MatcherHolder(Settings(lists=[lists_dir], data_dir=tmp_path))
    taken = holder.matcher
    write_list(lists_dir / "alpha.toml", "alpha", ["mirvelwort"])
    assert holder.reload_blocking("test").result == "ok"
    assert taken.match("zorblax") is not None and taken.match("mirvelwort") is None
    assert holder.matcher.match("zorblax") is None and holder.matcher.match("mirvelwort")


def test_a_retired_matcher_is_emptied_only_once_nothing_holds_it(
    lists_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload frees the matcher it replaced in pieces (deterrence.pieces.release),
    but never one that a request under way still uses."""
    words = invented_terms(3000)  # tables of more than one piece
    write_list(lists_dir / "alpha.toml", "alpha", words)
    holder = MatcherHolder(Settings(lists=[lists_dir], data_dir=tmp_path))
    released: list[weakref.ref[object]] = []
    release = pieces.release

    def watched(obj: object, pause: Callable[[], None]) -> None:
        released.append(weakref.ref(obj))
        release(obj, pause)

    monkeypatch.setattr(pieces, "release", watched)
    taken = holder.matcher  # as a request under way holds it
    write_list(lists_dir / "alpha.toml", "alpha", [*words, "mirvelwort"])
    assert holder.reload_blocking("test").result == "ok"
    assert released == []
    assert all(taken.match(word) for word in words[:300])  # whole still
    del taken
    write_list(lists_dir / "alpha.toml", "alpha", [*words, "quintaflor"])
    assert holder.reload_blocking("test").result == "ok"
    assert len(released) == 1 and released[0]() is None  # emptied, then gone
    assert holder.matcher.match("quintaflor") and holder.matcher.match(words[0])


def test_a_rebuilt_matcher_is_warmed_up_before_it_takes_traffic(
    lists_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matcher.warm_up runs on a newly built matcher before the swap, pausing between
    queries so that requests go on; the answers it leaves behind are right. A grown
    matcher (terms only added) is not warmed up."""
    holder = MatcherHolder(Settings(lists=[lists_dir], data_dir=tmp_path))
    pauses: list[int] = []
    seen_by_warm_up: list[object] = []
    warm_up = Matcher.warm_up

    def watched(matcher: Matcher, pause: Callable[[], None]) -> None:
        seen_by_warm_up.append(matcher)
        assert holder.matcher is not matcher  # not yet in service
        warm_up(matcher, lambda: (pauses.append(1), pause())[1])

    monkeypatch.setattr(Matcher, "warm_up", watched)
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "tozzlewick"])
    assert holder.reload_blocking("test").result == "ok"
    assert holder.matcher.grown_by == 1
    assert seen_by_warm_up == []
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])  # one replaced
    assert holder.reload_blocking("test").result == "ok"
    assert holder.matcher.grown_by is None
    assert seen_by_warm_up == [holder.matcher]
    assert len(pauses) >= 9  # one per fixed query at least
    assert len(holder.matcher._word_memo) > 0  # its tables have been used
    assert holder.matcher.match("mirvelwort") and not holder.matcher.match("search for books")


# --- requests keep flowing while a big list builds -------------------------------------


def invented_terms(count: int, seed: int = 7) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    rng = random.Random(seed)
    terms: set[str] = set()
    while len(terms) < count:
        terms.add("".join(rng.choice(syllables) for _ in range(4)) + rng.choice("xqz"))
    return sorted(terms)


def test_requests_are_answered_while_a_big_list_builds(lists_dir: Path, tmp_path: Path) -> None:
    middleware = DeterrenceMiddleware(
        app(), lists=[lists_dir], data_dir=tmp_path / "data", block_status=451, admin_token=TOKEN
    )
    with serve(middleware) as base:
        write_list(lists_dir / "big.toml", "big", invented_terms(30_000))
        done = threading.Event()
        latencies: list[tuple[float, float]] = []  # (finished at, seconds)
        statuses: list[int] = []

        def load() -> None:
            with httpx2.Client(timeout=10) as client:
                while not done.is_set():
                    started = time.monotonic()
                    response = client.get(f"{base}/search", params={"q": "weather report"})
                    finished = time.monotonic()
                    statuses.append(response.status_code)
                    latencies.append((finished, finished - started))

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(load) for _ in range(2)]
            time.sleep(0.3)
            reload_started = time.monotonic()
            response = httpx2.post(
                f"{base}/_deterrence/admin/reload",
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=120,
            )
            reload_ended = time.monotonic()
            time.sleep(0.2)
            done.set()
            for future in futures:
                future.result()
        assert response.status_code == 200, response.text
        big = {"id": "big", "action": "block", "version": None, "terms": 30_000}
        assert big in response.json()["lists"]
        during = [s for at, s in latencies if reload_started < at < reload_ended]
        build_seconds = reload_ended - reload_started
        assert set(statuses) == {200}
        # The loop kept answering while the matcher was built on a worker thread.
        assert len(during) >= 10, (len(during), build_seconds)
        assert max(during) < build_seconds / 2, (max(during), build_seconds)
        assert blocked(base, invented_terms(30_000)[123])


_FIRST_RELOAD = """
import asyncio, sys
from deterrence import Settings
from deterrence.reload import MatcherHolder

async def main() -> None:
    holder = MatcherHolder(Settings(lists=[sys.argv[1]], data_dir=sys.argv[2]))
    await holder.start()
    before = set(sys.modules)
    result = await holder.reload("test")
    await holder.stop()
    print(result.result, sorted(m for m in set(sys.modules) - before if m.startswith("anyio")))

asyncio.run(main())
"""


def test_the_first_reload_imports_no_thread_machinery_on_the_event_loop(
    lists_dir: Path, tmp_path: Path
) -> None:
    # A fresh interpreter: in this one, anyio's backend is imported already.
    # Imported by the first reload, it held the loop for 17-24 ms (bench.soak).
    output = subprocess.run(
        [sys.executable, "-c", _FIRST_RELOAD, str(lists_dir), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert output.split(maxsplit=1) == ["ok", "[]\n"]


# --- SIGHUP ----------------------------------------------------------------------------


def test_sighup_reloads_the_lists(lists_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DETERRENCE_DATA_DIR": str(tmp_path / "data"),
        "DETERRENCE_BLOCK_STATUS": "451",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deterrence",
            "demo",
            "--port",
            str(port),
            "--lists",
            str(lists_dir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base), timeout=30)
        assert not blocked(base, "mirvelwort")
        write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
        time.sleep(0.2)
        assert not blocked(base, "mirvelwort")  # polling is off: nothing happens by itself
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: blocked(base, "mirvelwort"))
        assert process.poll() is None  # SIGHUP's default would have ended the process
        assert metric(base, "deterrence_list_reloads_total", result="ok") == 1
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def _answers(base: str) -> bool:
    try:
        return httpx2.get(f"{base}/metrics", timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


# --- the admin endpoint ------------------------------------------------------------------


def test_admin_reload_answers_with_the_result(polling_server: str, lists_dir: Path) -> None:
    base = polling_server
    url = f"{base}/_deterrence/admin/reload"
    auth = {"authorization": f"Bearer {TOKEN}"}
    response = httpx2.post(url, headers=auth)
    assert response.status_code == 200
    assert response.json()["result"] == "ok"
    assert [entry["id"] for entry in response.json()["lists"]] == ["alpha", "beta"]
    (lists_dir / "gamma.txt").write_text("plimsquark\nx\n")  # a term too short to match
    response = httpx2.post(url, headers=auth)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith(f"{lists_dir / 'gamma.txt'}:2:")
    assert response.headers["cache-control"] == "no-store"


def test_admin_reload_without_a_token_configured_does_not_exist(
    lists_dir: Path, tmp_path: Path
) -> None:
    middleware = DeterrenceMiddleware(app(), lists=[lists_dir], data_dir=tmp_path / "data")
    with serve(middleware) as base:
        for headers in ({}, {"authorization": "Bearer"}, {"authorization": "Bearer x"}):
            response = httpx2.post(f"{base}/_deterrence/admin/reload", headers=headers)
            assert response.status_code == 404


# --- list URLs -----------------------------------------------------------------------------


@pytest.fixture
def list_server() -> Iterator[ListServer]:
    server = ListServer()
    yield server
    server.close()


def remote_settings(url: str, tmp_path: Path, lists_dir: Path, **extra: Any) -> Settings:
    return Settings(
        lists=[lists_dir],
        list_urls=[url],
        list_urls_allow_http=True,
        data_dir=tmp_path / "data",
        **extra,
    )


def test_list_urls_are_fetched_cached_and_polled_conditionally(
    list_server: ListServer, lists_dir: Path, tmp_path: Path
) -> None:
    list_server.publish(["vexmorrow"])
    url = f"{list_server.base}/lists/fleet.toml"
    holder = MatcherHolder(remote_settings(url, tmp_path, lists_dir))
    assert holder.matcher.match("vexmorrow") is not None
    assert "if-none-match" not in list_server.requests[0]
    assert holder.refresh_remote_blocking() is None  # unchanged: a 304
    assert list_server.requests[-1]["if-none-match"] == list_server.etag
    assert list_server.requests[-1]["if-modified-since"] == "Sun, 01 Nov 2026 10:00:00 GMT"
    list_server.publish(["vexmorrow", "plimsquark"])
    result = holder.refresh_remote_blocking()
    assert result is not None and result.result == "ok"
    assert holder.matcher.match("plimsquark") is not None


def test_a_broken_remote_list_keeps_the_last_good_one(
    list_server: ListServer, lists_dir: Path, tmp_path: Path
) -> None:
    list_server.publish(["vexmorrow"])
    url = f"{list_server.base}/fleet.toml"
    holder = MatcherHolder(remote_settings(url, tmp_path, lists_dir))
    list_server.body = b'id = "fleet"\nterms = [\n'
    list_server.etag = '"broken"'
    result = holder.refresh_remote_blocking()
    assert result is not None and result.result == "error" and result.kind == "list_invalid"
    assert result.error is not None and result.error.startswith(url)  # the URL, not the cache
    assert holder.matcher.match("vexmorrow") is not None
    assert holder.refresh_remote_blocking() is None  # the same broken body: reported once
    # The cache holds the last good copy only: a restart serves it.
    again = MatcherHolder(remote_settings(url, tmp_path, lists_dir))
    assert again.matcher.match("vexmorrow") is not None


def test_a_restart_without_network_serves_the_cached_lists(lists_dir: Path, tmp_path: Path) -> None:
    server = ListServer()
    server.publish(["vexmorrow"])
    url = f"{server.base}/fleet.toml"
    MatcherHolder(remote_settings(url, tmp_path, lists_dir))
    server.close()  # the network is gone
    holder = MatcherHolder(remote_settings(url, tmp_path, lists_dir))
    assert holder.matcher.match("vexmorrow") is not None
    result = holder.refresh_remote_blocking()
    assert result is not None and result.result == "error" and result.kind is None
    assert holder.matcher.match("vexmorrow") is not None
    # Without a cached copy there is nothing to serve: refuse to start, naming the URL.
    with pytest.raises(ListError, match=re.escape(url)):
        MatcherHolder(remote_settings(url, tmp_path / "elsewhere", lists_dir))


def test_a_pinned_list_url_refuses_other_content(
    list_server: ListServer, lists_dir: Path, tmp_path: Path
) -> None:
    digest = list_server.publish(["vexmorrow"])
    pinned = f"{list_server.base}/fleet.toml#sha256={digest}"
    holder = MatcherHolder(remote_settings(pinned, tmp_path, lists_dir))
    assert holder.matcher.match("vexmorrow") is not None
    list_server.publish(["vexmorrow", "plimsquark"])
    result = holder.refresh_remote_blocking()
    assert result is not None and result.result == "error"
    assert result.error is not None and "does not match the pinned" in result.error
    assert holder.matcher.match("plimsquark") is None
    wrong = f"{list_server.base}/fleet.toml#sha256={'0' * 64}"
    with pytest.raises(ListError, match="does not match the pinned"):
        MatcherHolder(remote_settings(wrong, tmp_path / "other", lists_dir))


def test_list_urls_must_be_https_unless_allowed(
    list_server: ListServer, lists_dir: Path, tmp_path: Path
) -> None:
    def holder(url: str) -> MatcherHolder:
        return MatcherHolder(Settings(lists=[lists_dir], list_urls=[url], data_dir=tmp_path))

    with pytest.raises(ValueError, match="must be an https:// URL"):
        holder(f"{list_server.base}/a.toml")
    with pytest.raises(ValueError, match="file name"):
        holder("https://example.invalid/latest")
    with pytest.raises(ValueError, match="64 hex digits"):
        holder("https://example.invalid/a.toml#sha256=abc")
    # A name in the fragment is enough; the fragment never reaches the server.
    list_server.publish(["vexmorrow"])
    holder = MatcherHolder(
        remote_settings(f"{list_server.base}/latest#name=fleet.toml", tmp_path, lists_dir)
    )
    assert holder.matcher.match("vexmorrow") is not None


def test_list_urls_are_polled_by_the_running_app(
    list_server: ListServer, lists_dir: Path, tmp_path: Path
) -> None:
    list_server.publish(["vexmorrow"])
    settings = remote_settings(
        f"{list_server.base}/fleet.toml",
        tmp_path,
        lists_dir,
        list_urls_poll_seconds=0.1,
        block_status=451,
    )
    with serve(DeterrenceMiddleware(app(), settings)) as base:
        assert blocked(base, "vexmorrow") and not blocked(base, "plimsquark")
        list_server.publish(["plimsquark"])
        wait_for(lambda: blocked(base, "plimsquark"))
        assert not blocked(base, "vexmorrow")
        assert metric(base, "deterrence_list_terms", list="fleet") == 1
