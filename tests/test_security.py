"""Security checks on real servers: the help redirect is no open redirect; the
dashboard and admin endpoints need credentials and admin POSTs resist CSRF; every
page deterrence serves carries the DESIGN §6 headers and sets no cookie; and nothing
a client sends — in any header or parameter deterrence reads — comes back in a page.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from live_uvicorn import free_port, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from deterrence import DeterrenceMiddleware, Settings
from deterrence.demo import create_app
from deterrence.proxy import ProxyApp
from deterrence.services import HelpDirectory

DASHBOARD_TOKEN = "dash-secret-token"
ADMIN_TOKEN = "admin-secret-token"
PREFIX = "/_deterrence"
MARKER = "xssmark"
PAYLOADS = (
    f'"><script>{MARKER}()</script>',
    f"<img src=x onerror={MARKER}>",
    f"javascript:{MARKER}//",
    f"{{{{7*7}}}}{MARKER}{{% raw %}}",  # template syntax
)
SECURITY_HEADERS = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        dashboard_token=DASHBOARD_TOKEN,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture(scope="module")
def demo(settings: Settings) -> Iterator[str]:
    with serve(create_app(settings)) as base:
        yield base


def assert_page_headers(response: httpx2.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (where, name)
    assert response.headers.get("x-robots-tag", "").startswith("noindex"), where
    csp = response.headers.get("content-security-policy", "")
    assert csp.startswith("default-src 'none'"), where
    framing = "frame-ancestors 'none'" in csp or response.headers.get("x-frame-options") == "DENY"
    assert framing, where
    assert "set-cookie" not in response.headers, where


# --- the help redirect ----------------------------------------------------------------


OPEN_REDIRECT_PATHS = [
    "//evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https:evil.example",
    "https://evil.example",
    "http:/evil.example",
    "%2F%2Fevil.example",
    "%5C%5Cevil.example",
    "%252F%252Fevil.example",
    "stop-it-now-uk/..//evil.example",
    "stop-it-now-uk%2F%2Fevil.example",
    "stop-it-now-uk/evil.example",
    "stop-it-now-uk%00evil.example",
    "stop-it-now-uk@evil.example",
    "%09//evil.example",
    "STOP-IT-NOW-UK",
    "",
]


@pytest.mark.parametrize("payload", OPEN_REDIRECT_PATHS)
def test_the_help_redirect_only_goes_to_configured_services(
    demo: str, settings: Settings, payload: str
) -> None:
    configured = {
        s.url for s in HelpDirectory.load(settings.resolved_help_services_path()).services.values()
    }
    for url in (
        f"{demo}{PREFIX}/go/{payload}",
        f"{demo}{PREFIX}/go/stop-it-now-uk?v={payload}&next={payload}&url={payload}",
    ):
        response = httpx2.get(url, follow_redirects=False)
        assert_page_headers(response)
        location = response.headers.get("location")
        if response.status_code == 303:
            assert location in configured
        else:
            assert response.status_code in (404, 405) and location is None


def test_a_configured_service_redirects_to_its_url(demo: str, settings: Settings) -> None:
    directory = HelpDirectory.load(settings.resolved_help_services_path())
    for service_id, service in directory.services.items():
        response = httpx2.get(f"{demo}{PREFIX}/go/{service_id}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == service.url


# --- the dashboard and the admin endpoints need credentials ----------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer wrong", f"Bearer {DASHBOARD_TOKEN}x", f"Basic {DASHBOARD_TOKEN}"],
)
def test_the_dashboard_needs_its_token(demo: str, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    response = httpx2.get(f"{demo}{PREFIX}/dashboard", headers=headers)
    assert response.status_code == 401
    assert_page_headers(response)
    assert "bearer" in response.headers["www-authenticate"].lower()
    response = httpx2.get(f"{demo}{PREFIX}/dashboard?token={DASHBOARD_TOKEN}")
    assert response.status_code == 401  # never in the URL


def test_the_dashboard_answers_with_its_token(demo: str) -> None:
    response = httpx2.get(
        f"{demo}{PREFIX}/dashboard", headers={"authorization": f"Bearer {DASHBOARD_TOKEN}"}
    )
    assert response.status_code == 200
    assert_page_headers(response)
    response = httpx2.post(
        f"{demo}{PREFIX}/dashboard", headers={"authorization": f"Bearer {DASHBOARD_TOKEN}"}
    )
    assert response.status_code == 405


def admin(demo: str, method: str = "POST", **headers: str) -> httpx2.Response:
    return httpx2.request(method, f"{demo}{PREFIX}/admin/reload", headers=headers)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer wrong", f"Bearer {DASHBOARD_TOKEN}", f"Basic {ADMIN_TOKEN}"],
)
def test_admin_needs_its_own_token(demo: str, authorization: str | None) -> None:
    response = admin(demo, **({"authorization": authorization} if authorization else {}))
    assert response.status_code == 401
    assert response.json() == {"error": "authentication required"}
    assert_page_headers(response)


def test_admin_reload_with_the_token(demo: str) -> None:
    response = admin(demo, authorization=f"Bearer {ADMIN_TOKEN}")
    assert response.status_code == 200 and response.json()["result"] == "ok"
    assert_page_headers(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1.evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "SAME"},
    ],
)
def test_admin_refuses_cross_site_requests_even_with_the_token(
    demo: str, headers: dict[str, str]
) -> None:
    host = demo.removeprefix("http://")
    headers = {k: v.replace("SAME", demo) for k, v in headers.items()}
    response = admin(demo, authorization=f"Bearer {ADMIN_TOKEN}", **headers)
    assert response.status_code == 403, (headers, host)
    assert_page_headers(response)


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
def test_admin_refuses_what_a_cross_site_form_can_send(demo: str, content_type: str) -> None:
    response = httpx2.post(
        f"{demo}{PREFIX}/admin/reload",
        content=b"a=b",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": content_type},
    )
    assert response.status_code == 415


def test_admin_allows_its_own_origin_and_json(demo: str) -> None:
    response = httpx2.post(
        f"{demo}{PREFIX}/admin/reload",
        json={},
        headers={
            "authorization": f"Bearer {ADMIN_TOKEN}",
            "origin": demo,
            "sec-fetch-site": "same-origin",
        },
    )
    assert response.status_code == 200


def test_admin_answers_no_cors_preflight_and_no_get(demo: str) -> None:
    preflight = admin(
        demo,
        "OPTIONS",
        origin="https://evil.example",
        **{
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization",
        },
    )
    assert preflight.status_code == 405
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    assert admin(demo, "GET", authorization=f"Bearer {ADMIN_TOKEN}").status_code == 405


def test_admin_does_not_exist_without_a_token(tmp_path: Path) -> None:
    with serve(create_app(Settings(data_dir=tmp_path))) as base:
        for method in ("POST", "GET"):
            response = admin(base, method, authorization="Bearer anything")
            assert response.status_code == 404
            assert_page_headers(response)


# --- §6 headers on every page ------------------------------------------------------------


def test_security_headers_on_every_page_deterrence_serves(demo: str) -> None:
    pages = [
        httpx2.get(f"{demo}/search?q=zorblax"),
        httpx2.get(f"{demo}/search?q=zorblax", headers={"accept": "application/json"}),
        httpx2.head(f"{demo}/search?q=zorblax"),
        httpx2.post(f"{demo}/search", data={"q": "zorblax"}),
        httpx2.get(f"{demo}{PREFIX}/warning"),
        httpx2.get(f"{demo}{PREFIX}/go/stop-it-now-uk"),
        httpx2.get(f"{demo}{PREFIX}/go/nowhere"),
        httpx2.post(f"{demo}{PREFIX}/go/stop-it-now-uk"),
        httpx2.get(f"{demo}{PREFIX}/static/warning.css"),
        httpx2.get(f"{demo}{PREFIX}/nothing-here"),
        httpx2.get(f"{demo}{PREFIX}/dashboard"),
        admin(demo, "GET"),
        admin(demo),
    ]
    for response in pages:
        assert_page_headers(response)
    assert pages[0].status_code == 200 and "<html" in pages[0].text
    assert pages[1].json()["blocked"] is True


@pytest.fixture
def silent_upstream() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()
    listener.settimeout(0.2)

    def run() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def test_security_headers_on_the_proxy_error_pages(tmp_path: Path, silent_upstream: str) -> None:
    down = DeterrenceMiddleware(ProxyApp(f"http://127.0.0.1:{free_port()}"), data_dir=tmp_path)
    slow = DeterrenceMiddleware(
        ProxyApp(silent_upstream, read_timeout=0.3), data_dir=tmp_path / "slow"
    )
    with serve(down) as down_base, serve(slow) as slow_base:
        bad_gateway = httpx2.get(f"{down_base}/search?q=weather")
        timeout = httpx2.get(f"{slow_base}/anything")
    assert bad_gateway.status_code == 502 and timeout.status_code == 504
    for response in (bad_gateway, timeout):
        assert_page_headers(response)
        assert "weather" not in response.text


# --- nothing user-supplied comes back ------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injected_headers_and_parameters_never_come_back(demo: str, payload: str) -> None:
    headers = {
        "accept-language": f"{payload}, de-{payload};q=0.9, x-{payload}",
        "user-agent": payload,
        "referer": f"https://example.org/{payload}",
        "x-forwarded-host": payload,
        "cookie": f"a={payload}",
    }
    safe = {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}
    params = {"q": f"zorblax {payload}", "v": payload, "range": payload, "lang": payload}
    auth = {"authorization": f"Bearer {DASHBOARD_TOKEN}"}
    responses = [
        httpx2.get(f"{demo}/search", params=params, headers=safe),
        httpx2.get(
            f"{demo}/search",
            params=params,
            headers={**safe, "accept": f"application/json, {payload}"},
        ),
        httpx2.post(f"{demo}/search", data=params, headers=safe),
        httpx2.get(f"{demo}{PREFIX}/warning", params=params, headers=safe),
        httpx2.get(f"{demo}{PREFIX}/go/stop-it-now-uk", params=params, headers=safe),
        httpx2.get(f"{demo}{PREFIX}/go/{payload}", headers=safe),
        httpx2.get(f"{demo}{PREFIX}/dashboard", params=params, headers={**safe, **auth}),
        httpx2.post(
            f"{demo}{PREFIX}/admin/reload",
            params=params,
            headers={**safe, "authorization": f"Bearer {ADMIN_TOKEN}"},
        ),
    ]
    for response in responses:
        assert response.status_code < 500
        assert MARKER not in response.text, response.request.url
        header_text = " ".join(f"{k}: {v}" for k, v in response.headers.items())
        assert MARKER not in header_text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_warning_banner_never_repeats_injected_headers(tmp_path: Path, payload: str) -> None:
    from deterrence.middleware import warning_banner

    async def results(request: Request) -> HTMLResponse:
        return HTMLResponse(str(warning_banner(request)))

    app = DeterrenceMiddleware(Starlette(routes=[Route("/search", results)]), data_dir=tmp_path)
    with serve(app) as base:
        response = httpx2.get(
            f"{base}/search",
            params={"q": f"mirvelsprocket {payload}"},
            headers={"accept-language": f"{payload}, en-{payload}"},
        )
    assert "deterrence-banner" in response.text
    assert MARKER not in response.text
