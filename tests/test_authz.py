"""The decision service, spoken to the way each proxy speaks to it: nginx
``auth_request``, Traefik ``forwardAuth``, Caddy ``forward_auth`` and Envoy
``ext_authz`` (HTTP). The service runs on a real server, uvicorn and the builtin
one (deterrence.decision_server) in turn, with lists of invented words; the real
proxies are driven in test_nginx.py and test_forward_auth_proxies.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import gateway_support
import httpx2
import pytest
from gateway_support import BLOCK_TERM, WARN_TERM, serve, write_lists
from live_uvicorn import metric, serve_builtin
from starlette.types import Scope

from deterrence.authz import (
    AuthzApp,
    BadDecisionRequest,
    OriginalRequest,
    original_request,
    rewrite_scope,
)
from deterrence.settings import Settings

SEARCH = f"/search?q={BLOCK_TERM}"
INNOCENT = "/search?q=lighthouse+keepers"
PRIVACY_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def http_scope(path: str, headers: dict[str, str] | None = None, query: bytes = b"") -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


# --- reading the original request -------------------------------------------------


def test_nginx_original_request_comes_from_x_original_headers() -> None:
    scope = http_scope("/nginx", {"X-Original-URI": SEARCH, "X-Original-Method": "post"})
    assert original_request("nginx", scope) == OriginalRequest("POST", SEARCH.encode())


@pytest.mark.parametrize("flavor", ["traefik", "caddy"])
def test_forward_auth_original_request_comes_from_x_forwarded_headers(flavor: str) -> None:
    scope = http_scope(
        f"/{flavor}",
        {
            "X-Forwarded-Method": "PUT",
            "X-Forwarded-Uri": SEARCH,
            "X-Forwarded-Host": "site.example",
            "X-Forwarded-Proto": "https",
        },
    )
    assert original_request(flavor, scope) == OriginalRequest("PUT", SEARCH.encode())  # type: ignore[arg-type]


def test_envoy_original_request_is_the_path_after_the_prefix() -> None:
    scope = http_scope("/envoy/search", query=f"q={BLOCK_TERM}".encode())
    scope["method"] = "POST"
    assert original_request("envoy", scope) == OriginalRequest("POST", SEARCH.encode())
    assert original_request("envoy", http_scope("/envoy")).target == b"/"


def test_method_defaults_to_get_and_absolute_uris_keep_path_and_query() -> None:
    scope = http_scope("/nginx", {"X-Original-URI": f"https://site.example{SEARCH}"})
    assert original_request("nginx", scope) == OriginalRequest("GET", SEARCH.encode())


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Original-URI": ""}, {"X-Original-URI": "search?q=x"}],
)
def test_a_missing_or_bad_uri_is_a_configuration_error(headers: dict[str, str]) -> None:
    with pytest.raises(BadDecisionRequest):
        original_request("nginx", http_scope("/nginx", headers))


def test_rewritten_scope_looks_like_the_original_request() -> None:
    scope = http_scope("/nginx", {"Accept-Language": "de"})
    scope["state"] = {"kept": 1}
    inner = rewrite_scope(scope, OriginalRequest("POST", b"/%73earch?q=z%2525x#frag"))
    assert inner["method"] == "POST"
    assert inner["path"] == "/search"
    assert inner["raw_path"] == b"/%73earch"
    assert inner["query_string"] == b"q=z%2525x"  # still encoded: the middleware decodes
    assert inner["headers"] == scope["headers"]
    assert inner["state"] == {"kept": 1} and inner["state"] is not scope["state"]
    assert scope["path"] == "/nginx"  # the server's own scope is untouched


# --- the live service ---------------------------------------------------------------


@pytest.fixture(scope="module", params=["uvicorn", "builtin"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AuthzApp, str]]:
    tmp = tmp_path_factory.mktemp("authz")
    settings = Settings(
        lists=[write_lists(tmp / "lists")], data_dir=tmp / "data", store_enabled=False
    )
    app = AuthzApp(settings)
    with (serve if request.param == "uvicorn" else serve_builtin)(app) as url:
        yield app, url


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(trust_env=False, timeout=10) as client:
        yield client


def nginx(http: httpx2.Client, base: str, uri: str, **headers: str) -> httpx2.Response:
    return http.get(f"{base}/nginx", headers={"X-Original-URI": uri, **headers})


def forward_auth(
    http: httpx2.Client, base: str, flavor: str, uri: str, **headers: str
) -> httpx2.Response:
    return http.get(
        f"{base}/{flavor}",
        headers={
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": uri,
            "X-Forwarded-Host": "site.example",
            "X-Forwarded-Proto": "https",
            **headers,
        },
    )


def assert_allowed(response: httpx2.Response) -> None:
    assert response.status_code == 200  # Envoy allows on exactly 200
    assert response.content == b""
    assert response.headers.get("deterrence-action", "") == ""  # Caddy gets it empty


def assert_warning_page(response: httpx2.Response) -> None:
    assert response.status_code == 403
    gateway_support.assert_warning_page(response)


# nginx ----------------------------------------------------------------------------


def test_nginx_innocent_search_is_allowed(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    assert_allowed(nginx(http, service[1], INNOCENT, **{"X-Original-Method": "GET"}))


@pytest.mark.parametrize(
    "uri",
    [
        SEARCH,
        f"/search?page=2&Q={BLOCK_TERM.upper()}",
        "/search?q=%257Aorblax",  # double-encoded z
        "/search?q=z0rbl4x",
        "/search?q=z%C3%B6rbl%E2%80%8Bax",  # diacritic and a zero-width space
        "/search?q=z.o.r.b.l.a.x",
        f"//x/../%73earch?q={BLOCK_TERM}",
    ],
)
def test_nginx_matching_search_is_an_empty_403(
    service: tuple[AuthzApp, str], http: httpx2.Client, uri: str
) -> None:
    app, base = service
    response = nginx(http, base, uri, **{"X-Original-Method": "GET"})
    assert response.status_code == 403  # the only block answer auth_request understands
    assert response.content == b""
    assert response.headers["deterrence-variant"] in app.middleware.pages.variants


def test_nginx_warn_match_is_allowed_with_the_action_header(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    response = nginx(http, service[1], f"/search?q={WARN_TERM}")
    assert response.status_code == 200
    assert response.headers["deterrence-action"] == "warn"


def test_nginx_page_view_is_counted_when_the_warning_page_is_fetched(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    _, base = service
    views = metric(base, "deterrence_page_views_total")
    blocks = metric(base, "deterrence_interventions_total", list="test-block", action="block")
    variant = nginx(http, base, SEARCH).headers["deterrence-variant"]
    assert metric(base, "deterrence_page_views_total") == views  # thrown away by nginx
    assert (
        metric(base, "deterrence_interventions_total", list="test-block", action="block")
        == blocks + 1
    )
    page = http.get(f"{base}/_deterrence/warning?v={variant}", headers={"Accept-Language": "de"})
    assert page.status_code == 200
    assert 'lang="de"' in page.text
    assert metric(base, "deterrence_page_views_total", variant=variant) >= 1
    assert metric(base, "deterrence_page_views_total") == views + 1


def test_a_repeated_question_gets_the_first_answer_and_is_counted_again(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    """A repeat that matched nothing is answered from the middleware's memo of
    query strings, without a full pass through the middleware: the same answer
    for every flavor, and counted each time."""
    _, base = service
    before = metric(base, "deterrence_requests_inspected_total", route="/search")
    for _ in range(3):
        assert_allowed(nginx(http, base, INNOCENT))
        assert_allowed(forward_auth(http, base, "caddy", INNOCENT))
        assert_allowed(http.get(f"{base}/envoy{INNOCENT}"))
        assert nginx(http, base, SEARCH).status_code == 403
        assert_warning_page(forward_auth(http, base, "traefik", SEARCH))
        assert_warning_page(http.get(f"{base}/envoy{SEARCH}"))
    assert metric(base, "deterrence_requests_inspected_total", route="/search") == before + 18


# Past max_query_chars (1024): an innocent query, and a term hidden after the cap.
LONG_INNOCENT = "/search?q=lighthouse" + "+keepers" * 150
LONG_HIDDEN = "/search?q=" + "keepers+" * 150 + BLOCK_TERM


def assert_too_long_page(response: httpx2.Response) -> None:
    assert response.status_code == 414
    assert response.headers["content-type"].startswith("text/html")
    for name, value in PRIVACY_HEADERS.items():
        assert response.headers[name] == value
    assert "<h1>" in response.text
    assert "keepers" not in response.text and BLOCK_TERM not in response.text


def test_a_search_too_long_to_inspect_is_rejected_in_each_proxys_terms(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    """nginx would make a 414 a 500 (which the shipped config serves unchecked), so
    it gets a 401 and fetches the page; the others pass the 414 page on. Never from
    the memo: the second time is rejected too."""
    _, base = service
    views = metric(base, "deterrence_page_views_total")
    for uri in (LONG_INNOCENT, LONG_HIDDEN) * 2:
        response = nginx(http, base, uri)
        assert response.status_code == 401
        assert response.content == b""
        for flavor in ("traefik", "caddy"):
            assert_too_long_page(forward_auth(http, base, flavor, uri))
        assert_too_long_page(http.get(f"{base}/envoy{uri}"))
    assert_too_long_page(http.get(f"{base}/_deterrence/too-long"))
    assert metric(base, "deterrence_page_views_total") == views  # no warning was shown


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_on_oversize_closed_is_a_block_and_open_an_allow(
    tmp_path: Path, http: httpx2.Client, mode: str
) -> None:
    settings = Settings(
        lists=[write_lists(tmp_path / "lists")],
        data_dir=tmp_path / "data",
        store_enabled=False,
        on_oversize=mode,
    )
    with serve_builtin(AuthzApp(settings)) as base:
        for _ in range(2):
            if mode == "closed":
                assert nginx(http, base, LONG_HIDDEN).status_code == 403
                assert_warning_page(forward_auth(http, base, "traefik", LONG_HIDDEN))
                assert_warning_page(http.get(f"{base}/envoy{LONG_HIDDEN}"))
            else:
                assert_allowed(nginx(http, base, LONG_HIDDEN))
                assert_allowed(http.get(f"{base}/envoy{LONG_HIDDEN}"))
        # Inside the cap a block is a block in every mode.
        assert nginx(http, base, f"/search?q={BLOCK_TERM}" + "+keepers" * 150).status_code == 403
        asked = 2 * (3 if mode == "closed" else 2) + 1
        assert metric(base, "deterrence_errors_total", kind="query_too_long") == asked


def test_every_path_asked_about_is_inspected_and_labelled_by_route(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    _, base = service
    searches = metric(base, "deterrence_requests_inspected_total", route="/search")
    others = metric(base, "deterrence_requests_inspected_total", route="*")
    assert nginx(http, base, f"//search?q={BLOCK_TERM}").status_code == 403
    assert nginx(http, base, f"/elsewhere?q={BLOCK_TERM}").status_code == 403
    assert metric(base, "deterrence_requests_inspected_total", route="/search") == searches + 1
    assert metric(base, "deterrence_requests_inspected_total", route="*") == others + 1


def test_deterrence_own_paths_are_always_allowed(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    assert_allowed(nginx(http, service[1], f"/_deterrence/warning?q={BLOCK_TERM}"))
    assert_allowed(nginx(http, service[1], "/metrics"))


def test_missing_original_uri_is_a_400(service: tuple[AuthzApp, str], http: httpx2.Client) -> None:
    response = http.get(f"{service[1]}/nginx")
    assert response.status_code == 400
    assert "X-Original-URI".lower() in response.text.lower()


def test_other_paths_are_not_found_and_metrics_are_served(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    assert http.get(f"{service[1]}/{BLOCK_TERM}?q={BLOCK_TERM}").status_code == 404
    metrics = http.get(f"{service[1]}/metrics")
    assert metrics.status_code == 200
    assert "deterrence_requests_inspected_total" in metrics.text


# Traefik and Caddy ----------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["traefik", "caddy"])
def test_forward_auth_innocent_search_is_allowed(
    service: tuple[AuthzApp, str], http: httpx2.Client, flavor: str
) -> None:
    assert_allowed(forward_auth(http, service[1], flavor, INNOCENT))


@pytest.mark.parametrize("flavor", ["traefik", "caddy"])
def test_forward_auth_block_is_the_warning_page_itself(
    service: tuple[AuthzApp, str], http: httpx2.Client, flavor: str
) -> None:
    _, base = service
    views = metric(base, "deterrence_page_views_total")
    response = forward_auth(http, base, flavor, SEARCH, **{"Accept-Language": "fr-CA,fr;q=0.9"})
    assert_warning_page(response)
    assert 'lang="fr"' in response.text
    assert metric(base, "deterrence_page_views_total") == views + 1  # shown, so counted


def test_forward_auth_block_answers_json_to_clients_that_ask(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    response = forward_auth(http, service[1], "caddy", SEARCH, Accept="application/json")
    assert response.status_code == 403
    document = response.json()
    assert document["blocked"] is True
    assert document["services"]
    assert BLOCK_TERM not in response.text


def test_forward_auth_warn_adds_the_action_header(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    response = forward_auth(http, service[1], "traefik", f"/search?q={WARN_TERM}")
    assert response.status_code == 200
    assert response.headers["deterrence-action"] == "warn"


def test_configured_non_2xx_block_status_is_kept(tmp_path: Path, http: httpx2.Client) -> None:
    settings = Settings(
        lists=[write_lists(tmp_path / "lists")],
        data_dir=tmp_path / "data",
        store_enabled=False,
        block_status=451,
    )
    with serve(AuthzApp(settings)) as base:
        assert forward_auth(http, base, "traefik", SEARCH).status_code == 451
        assert nginx(http, base, SEARCH).status_code == 403  # nginx understands nothing else


# Envoy ----------------------------------------------------------------------------


def test_envoy_innocent_search_is_exactly_200(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    assert_allowed(http.get(f"{service[1]}/envoy{INNOCENT}"))
    assert_allowed(http.post(f"{service[1]}/envoy{INNOCENT}", content=b""))


def test_envoy_block_is_the_warning_page(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    assert_warning_page(http.get(f"{service[1]}/envoy{SEARCH}"))
    assert_warning_page(http.get(f"{service[1]}/envoy/search?q=%257Aorblax"))


def test_envoy_warn_adds_the_action_header(
    service: tuple[AuthzApp, str], http: httpx2.Client
) -> None:
    response = http.get(f"{service[1]}/envoy/search?q={WARN_TERM}")
    assert response.status_code == 200
    assert response.headers["deterrence-action"] == "warn"


def test_access_log_never_holds_the_search(tmp_path: Path, http: httpx2.Client) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    settings = Settings(
        lists=[write_lists(tmp_path / "lists")], data_dir=tmp_path / "data", store_enabled=False
    )
    handler = Collect()
    with serve(AuthzApp(settings), log_level="info", access_log=True) as base:
        logging.getLogger("uvicorn.access").addHandler(handler)
        try:
            http.get(f"{base}/envoy{SEARCH}")
            http.get(f"{base}/envoy/search?q={WARN_TERM}")
            nginx(http, base, SEARCH)
            forward_auth(http, base, "traefik", SEARCH)
        finally:
            logging.getLogger("uvicorn.access").removeHandler(handler)
    assert len(lines) == 4
    for line in lines:
        assert BLOCK_TERM not in line and WARN_TERM not in line
