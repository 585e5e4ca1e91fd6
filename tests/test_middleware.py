"""DeterrenceMiddleware in real apps on a real uvicorn server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from live_uvicorn import free_port, metric, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from deterrence import DeterrenceMiddleware, Settings
from deterrence.middleware import decision_of, warning_banner

REPO = Path(__file__).resolve().parent.parent


class Seen:
    """What reached the app: body bytes and decisions."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.actions: list[str | None] = []


def starlette_app(seen: Seen) -> Starlette:
    async def search(request: Request) -> PlainTextResponse:
        seen.bodies.append(await request.body())
        decision = decision_of(request)
        seen.actions.append(decision.action if decision else None)
        return PlainTextResponse(f"results{warning_banner(request)}")

    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("other page")

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    return Starlette(
        routes=[
            Route("/search", search, methods=["GET", "POST", "HEAD", "OPTIONS"]),
            Route("/api/{version}/search", search, methods=["GET", "POST"]),
            Route("/about", other),
            WebSocketRoute("/ws", echo),
        ]
    )


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def base_url(seen: Seen, tmp_path: Path) -> Iterator[str]:
    app = DeterrenceMiddleware(
        starlette_app(seen),
        data_dir=tmp_path,
        search_paths=["/search", "/api/*/search"],
        query_params=["q", "query"],
    )
    with serve(app) as url:
        yield url


FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}


def get(url: str, **kwargs: Any) -> httpx2.Response:
    return httpx2.get(url, timeout=10, **kwargs)


def is_warning(response: httpx2.Response) -> bool:
    return "text/html" in response.headers.get("content-type", "") and "<html" in response.text


def test_innocent_searches_reach_the_app(base_url: str, seen: Seen) -> None:
    response = get(f"{base_url}/search", params={"q": "weather tomorrow"})
    assert response.text == "results"
    assert seen.actions == [None]


@pytest.mark.parametrize(
    "query_string",
    [
        "q=zorblax",
        "q=Z0RBL4X+videos",
        "q=z+o+r+b+l+a+x",
        "q=zor%E2%80%8Bblax",  # zero-width space
        "q=%257A%256F%2572%2562%256C%2561%2578",  # double-encoded
        "q=fine&q=zorblax",  # the second of a repeated parameter
        "Q=zorblax",  # oddly cased name
        "query=zorblax",
    ],
)
def test_block_serves_the_warning_page(base_url: str, seen: Seen, query_string: str) -> None:
    response = get(f"{base_url}/search?{query_string}")
    assert response.status_code == 200
    assert is_warning(response)
    assert seen.actions == []  # the app never saw it
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    assert "zorblax" not in response.text.lower()


def test_a_repeated_search_gets_the_same_answer_and_is_counted_again(
    base_url: str, seen: Seen
) -> None:
    """Repeats are answered from the memo of recent query strings: the same
    answer as the first time, and counted every time, errors included."""
    too_long = "q=zorblax+" + "a" * 2_000  # past max_query_chars: matched up to the cap
    for _ in range(3):
        assert get(f"{base_url}/search?q=garden+tools").text == "results"
        assert is_warning(get(f"{base_url}/search?q=Z0RBL4X"))
        assert is_warning(get(f"{base_url}/search?{too_long}"))
    assert seen.actions == [None] * 3
    assert metric(base_url, "deterrence_requests_inspected_total", route="/search") == 9
    # Timed: the first sight of each, and every overlong one (never memoized).
    assert metric(base_url, "deterrence_match_duration_seconds_count") == 1 + 1 + 3
    assert metric(base_url, "deterrence_interventions_total", action="block") == 6
    assert metric(base_url, "deterrence_errors_total", kind="query_too_long") == 3


def test_glob_search_paths(base_url: str) -> None:
    assert is_warning(get(f"{base_url}/api/v2/search?q=zorblax"))
    assert get(f"{base_url}/api/v2/other?q=zorblax").status_code == 404


def test_json_clients_get_json_with_help_services(base_url: str) -> None:
    response = get(f"{base_url}/search?q=zorblax", headers={"accept": "application/json"})
    body = response.json()
    assert body["blocked"] is True
    assert body["services"]


def test_bodies_are_inspected_and_replayed_unchanged(base_url: str, seen: Seen) -> None:
    assert is_warning(httpx2.post(f"{base_url}/search", data={"q": "zorblax"}))
    assert is_warning(httpx2.post(f"{base_url}/search", files={"q": (None, "z0rblax")}))
    assert is_warning(httpx2.post(f"{base_url}/search", json={"filters": {"query": "zorblax"}}))
    latin1 = "q=zörblax".encode("latin-1")
    response = httpx2.post(
        f"{base_url}/search",
        content=latin1,
        headers={"content-type": "application/x-www-form-urlencoded; charset=iso-8859-1"},
    )
    assert is_warning(response)
    assert seen.bodies == []
    innocent = json.dumps({"query": "weather", "page": 2}).encode()
    response = httpx2.post(
        f"{base_url}/search", content=innocent, headers={"content-type": "application/json"}
    )
    assert response.text == "results"
    assert seen.bodies == [innocent]


def test_json_at_any_depth_and_under_every_duplicate_key_is_inspected(
    base_url: str, seen: Seen
) -> None:
    bodies = [
        '{"a": ' * 40 + '{"q": "zorblax"}' + "}" * 40,
        '[{"a": ' * 300 + '{"Query": [["weather"], {"x": "zorblax"}]}' + "}]" * 300,
        '{"q": "zorblax", "q": "weather"}',  # json.loads keeps the last; others the first
    ]
    for body in bodies:
        response = httpx2.post(
            f"{base_url}/search", content=body, headers={"content-type": "application/json"}
        )
        assert is_warning(response)
    assert seen.bodies == []


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_a_body_is_inspected_whatever_the_method(base_url: str, seen: Seen, method: str) -> None:
    """Express's body parsers read a GET's body, and search APIs take GET with JSON."""
    for content, headers in [(b"q=zorblax", FORM), (b'{"query": "zorblax"}', JSON)]:
        response = httpx2.request(method, f"{base_url}/search", content=content, headers=headers)
        assert is_warning(response)
    assert seen.actions == []
    assert get(f"{base_url}/search?q=weather", headers={"content-length": "0"}).text == "results"


def test_options_is_inspected_unless_it_is_a_cors_preflight(base_url: str, seen: Seen) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    assert is_warning(httpx2.options(f"{base_url}/search?q=zorblax"))
    assert is_warning(httpx2.options(f"{base_url}/search?q=zorblax", headers=origin))
    assert seen.actions == []
    preflight = {**origin, "Access-Control-Request-Method": "GET"}
    assert httpx2.options(f"{base_url}/search?q=zorblax", headers=preflight).text == "results"
    assert seen.actions == [None]


# --- searches too long to inspect whole ------------------------------------------------

PAD = "+pad" * 300  # 1,200 characters: past max_query_chars (1024)


@pytest.fixture(params=["reject", "closed", "open"])
def oversize(
    request: pytest.FixtureRequest, seen: Seen, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    mode: str = request.param
    app = DeterrenceMiddleware(starlette_app(seen), data_dir=tmp_path, on_oversize=mode)
    with serve(app) as url:
        yield mode, url


def assert_rejected(response: httpx2.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "set-cookie" not in response.headers
    assert "<h1>" in response.text
    for word in ("zorblax", "weather", "pad"):
        assert word not in response.text.lower()


def test_what_cannot_be_inspected_reaches_the_app_only_when_open(
    oversize: tuple[str, str], seen: Seen
) -> None:
    """Padding hides nothing: a term past the cap, a body past ``max_body_bytes`` or
    nested too deep to parse are answered per ``on_oversize``, every time (no memo
    keeps an answer for them), and counted."""
    mode, url = oversize
    huge_form = b"q=zorblax&pad=" + b"x" * (70 * 1024)
    requests = [
        (414, lambda: get(f"{url}/search?q={PAD[1:]}+zorblax")),
        (414, lambda: get(f"{url}/search?q=weather{PAD}")),
        (413, lambda: httpx2.post(f"{url}/search", content=f"q={PAD}+zorblax", headers=FORM)),
        (413, lambda: httpx2.post(f"{url}/search", content=huge_form, headers=FORM)),
        (413, lambda: httpx2.post(f"{url}/search", json={"q": PAD.replace("+", " ") + "zorblax"})),
        (
            413,
            lambda: httpx2.post(
                f"{url}/search", content="[" * 5000 + '{"q": "weather"}' + "]" * 5000, headers=JSON
            ),
        ),
    ]
    for _ in range(2):
        for status, send in requests:
            response = send()
            if mode == "reject":
                assert_rejected(response, status)
            elif mode == "closed":
                assert response.status_code == 200
                assert is_warning(response)
            else:
                assert response.text == "results"
    if mode == "open":
        assert len(seen.actions) == 12
        assert seen.bodies.count(huge_form) == 2  # replayed unchanged
    else:
        assert seen.actions == []
    assert metric(url, "deterrence_errors_total", kind="query_too_long") == 2 * 4
    assert metric(url, "deterrence_errors_total", kind="body_too_large") == 2 * 2
    assert metric(url, "deterrence_interventions_total") == 0


def test_a_block_inside_the_cap_is_the_warning_whatever_the_mode(
    oversize: tuple[str, str], seen: Seen
) -> None:
    """A ``block`` match in the inspected part settles it; a ``warn`` match does not,
    since the rest of the query would reach the app."""
    mode, url = oversize
    assert is_warning(get(f"{url}/search?q=zorblax{PAD}"))
    response = get(f"{url}/search?q=mirvelsprocket{PAD}")
    if mode == "reject":
        assert_rejected(response, 414)
    elif mode == "closed":
        assert is_warning(response)
    else:
        assert "deterrence-banner" in response.text
    assert seen.actions == (["warn"] if mode == "open" else [])
    assert metric(url, "deterrence_interventions_total", action="block") == 1


def test_warn_passes_the_decision_and_renders_a_banner(base_url: str, seen: Seen) -> None:
    response = get(f"{base_url}/search?q=mirvelsprocket")
    assert response.text.startswith("results<")
    assert "deterrence-banner" in response.text
    assert seen.actions == ["warn"]


def test_non_search_routes_and_websockets_pass_through(
    base_url: str, seen: Seen, tmp_path: Path
) -> None:
    assert get(f"{base_url}/about?q=zorblax").text == "other page"
    app = DeterrenceMiddleware(starlette_app(seen), data_dir=tmp_path / "ws")
    with TestClient(app) as client, client.websocket_connect("/ws?q=zorblax") as websocket:
        websocket.send_text("hello")
        assert websocket.receive_text() == "hello"


@pytest.mark.parametrize(
    "query_string",
    ["q=%", "q=%zz%", "q=%ff%fe%fd", "q=%00%01", "q==&&==", "q", "q=" + "a" * 5000],
)
def test_malformed_requests_never_500(base_url: str, query_string: str) -> None:
    too_long = len(query_string) > Settings.model_fields["max_query_chars"].default
    assert get(f"{base_url}/search?{query_string}").status_code == (414 if too_long else 200)


def test_head_requests(base_url: str) -> None:
    assert httpx2.head(f"{base_url}/search?q=zorblax").status_code == 200


def test_fastapi_app(tmp_path: Path) -> None:
    api = FastAPI()

    @api.get("/search")
    async def search(request: FastAPIRequest, q: str = "") -> JSONResponse:
        return JSONResponse({"results": [], "banner": str(warning_banner(request))})

    api.add_middleware(DeterrenceMiddleware, data_dir=tmp_path)
    with serve(api) as url:
        assert get(f"{url}/search?q=weather").json() == {"results": [], "banner": ""}
        assert is_warning(get(f"{url}/search?q=zorblax"))
        assert get(f"{url}/search?q=mirvelsprocket").json()["banner"]


def test_settings_from_the_environment_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETERRENCE_SEARCH_PATHS", '["/find"]')
    monkeypatch.setenv("DETERRENCE_QUERY_PARAMS", '["term"]')
    assert Settings().search_paths == ["/find"]
    app = DeterrenceMiddleware(starlette_app(Seen()), query_params=["q"], data_dir="unused")
    assert app.settings.search_paths == ["/find"]
    assert app.settings.query_params == ["q"]


def test_plain_uvicorn_access_log_is_redacted(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "APP_DATA_DIR": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.apps.plain:app", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            try:
                get(f"http://127.0.0.1:{port}/search?q=canaryweather")
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        get(f"http://127.0.0.1:{port}/search?q=zorblaxcanary")
        get(f"http://127.0.0.1:{port}/search?q=zorblax")
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0].decode()
    assert 'GET /search?- HTTP/1.1" 200' in output
    assert "canary" not in output
    assert "zorblax" not in output
    assert "127.0.0.1" not in output.replace(f"http://127.0.0.1:{port}", "")


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/search", "/search"),
        ("/search/", "/search"),
        ("//search", "/search"),
        ("/./search", "/search"),
        ("/x/../search", "/search"),
        ("/api/v1//search", "/api/*/search"),
        ("/searches", None),
        ("/about", None),
    ],
)
def test_search_routes_see_the_path_a_router_sees(path: str, route: str | None) -> None:
    from deterrence.middleware import SearchRoutes

    assert SearchRoutes(["/search", "/api/*/search"]).route_of(path) == route
