"""The shipped nginx configuration (deploy/nginx/deterrence.conf), run by the real
Debian nginx in front of a site that records what reaches it, with a real
``deterrence authz`` process deciding. Only the ports and log paths are changed."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from gateway_support import (
    BLOCK_TERM,
    REPO,
    WARN_TERM,
    RecordingSite,
    assert_too_long_searches_get_the_414_page,
    assert_warning_page,
    authz_process,
    decisions,
    free_port,
    metric,
    raw_get,
    require_program,
    run_process,
    serve,
)

pytestmark = pytest.mark.nginx

SHIPPED = REPO / "deploy" / "nginx" / "deterrence.conf"


def render(conf: str, *, listen: int, site: int, authz: int, log: Path) -> str:
    """The shipped file with this test's ports and log path; fails if the shipped
    file no longer has what is replaced."""
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{listen};",
        "server 127.0.0.1:3000;": f"server 127.0.0.1:{site};",
        "server 127.0.0.1:8001;": f"server 127.0.0.1:{authz};",
        "/var/log/nginx/access.log": str(log),
    }
    for old, new in replacements.items():
        assert old in conf, f"{SHIPPED} no longer contains {old!r}"
        conf = conf.replace(old, new)
    return conf


def main_conf(prefix: Path, included: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {included};
}}
"""


@contextmanager
def nginx(tmp: Path, *, site: int, authz: int, name: str = "nginx") -> Iterator[Gateway]:
    binary = require_program("nginx", "/usr/sbin/nginx")
    prefix = tmp / name
    prefix.mkdir()
    port = free_port()
    included = prefix / "deterrence.conf"
    included.write_text(
        render(SHIPPED.read_text(), listen=port, site=site, authz=authz, log=prefix / "search.log")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, included))
    check = run_test_config(binary, prefix, conf)
    assert check == 0, (prefix / "test.log").read_text()
    with run_process(
        [binary, "-p", prefix, "-c", conf, "-e", prefix / "error.log"],
        ports=[port],
        log=prefix / "stdout.log",
    ):
        yield Gateway(f"http://127.0.0.1:{port}", prefix)


def run_test_config(binary: Path, prefix: Path, conf: Path) -> int:

    with (prefix / "test.log").open("wb") as log:
        return subprocess.call(
            [
                str(binary),
                "-t",
                "-p",
                str(prefix),
                "-c",
                str(conf),
                "-e",
                str(prefix / "error.log"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@dataclass
class Gateway:
    url: str
    prefix: Path

    def logs(self) -> str:
        return "".join(
            path.read_text(errors="replace")
            for path in sorted(self.prefix.glob("*.log"))
            if path.name != "error.log"
        )


@dataclass
class Stack:
    gateway: Gateway
    site: RecordingSite
    authz: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("nginx")
    site = RecordingSite()
    with serve(site) as site_url, authz_process(tmp) as authz_url:
        site_port = int(site_url.rsplit(":", 1)[1])
        authz_port = int(authz_url.rsplit(":", 1)[1])
        with nginx(tmp, site=site_port, authz=authz_port) as gateway:
            yield Stack(gateway, site, authz_url)


def test_innocent_search_reaches_the_site(stack: Stack, http: httpx2.Client) -> None:
    before = decisions(stack.authz)
    response = http.get(f"{stack.gateway.url}/search?q=lighthouse+keepers")
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
        "q=z.o.r.b.l.a.x",
        f"page=2&Q={BLOCK_TERM}",
    ],
)
def test_matching_search_gets_the_warning_page(
    stack: Stack, http: httpx2.Client, query: str
) -> None:
    seen = len(stack.site.requests)
    response = http.get(f"{stack.gateway.url}/search?{query}")
    assert response.status_code == 200  # DETERRENCE_BLOCK_STATUS, default 200
    assert_warning_page(response)
    assert len(stack.site.requests) == seen  # the site never saw it


@pytest.mark.parametrize("path", ["/%73earch", "//search", "/x/../search", "/./search"])
def test_obfuscated_path_to_the_search_is_still_checked(stack: Stack, path: str) -> None:
    seen = len(stack.site.requests)
    status, body = raw_get(stack.gateway.url, f"{path}?q={BLOCK_TERM}")
    assert len(stack.site.requests) == seen, f"nginx passed {path} to the site"
    assert status == 200
    assert "<html" in body


def test_a_search_too_long_to_inspect_gets_the_414_page(stack: Stack, http: httpx2.Client) -> None:
    """The decision service's 401 becomes deterrence's 414 page; never a 500, which
    the config would serve unchecked."""
    assert_too_long_searches_get_the_414_page(http, stack.gateway.url, stack.site)


def test_options_is_checked_unless_it_is_a_cors_preflight(
    stack: Stack, http: httpx2.Client
) -> None:
    seen = len(stack.site.requests)
    assert_warning_page(http.options(f"{stack.gateway.url}/search?q={BLOCK_TERM}"))
    assert len(stack.site.requests) == seen
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"}
    response = http.options(f"{stack.gateway.url}/search?q={BLOCK_TERM}", headers=preflight)
    assert response.json()["method"] == "OPTIONS"  # the site answered it


def test_post_search_gets_the_warning_page(stack: Stack, http: httpx2.Client) -> None:
    response = http.post(f"{stack.gateway.url}/search?q={BLOCK_TERM}", content=b"x=1")
    assert_warning_page(response)


def test_warning_page_speaks_the_client_language(stack: Stack, http: httpx2.Client) -> None:
    response = http.get(
        f"{stack.gateway.url}/search?q={BLOCK_TERM}", headers={"Accept-Language": "de-AT,de;q=0.9"}
    )
    assert_warning_page(response)
    assert 'lang="de"' in response.text


def test_each_warning_is_counted_once(stack: Stack, http: httpx2.Client) -> None:
    views = metric(stack.authz, "deterrence_page_views_total")
    blocks = metric(stack.authz, "deterrence_interventions_total", list="test-block")
    for _ in range(3):
        assert_warning_page(http.get(f"{stack.gateway.url}/search?q={BLOCK_TERM}"))
    assert metric(stack.authz, "deterrence_page_views_total") == views + 3
    assert metric(stack.authz, "deterrence_interventions_total", list="test-block") == blocks + 3


def test_help_links_on_the_page_work_through_nginx(stack: Stack, http: httpx2.Client) -> None:
    page = http.get(f"{stack.gateway.url}/search?q={BLOCK_TERM}").text
    links = re.findall(r'href="(/_deterrence/go/[^"]+)"', page)
    assert links
    response = http.get(stack.gateway.url + links[0].replace("&amp;", "&"))
    assert response.status_code == 303  # a counted redirect; not followed
    assert response.headers["location"].startswith("https://")
    assert response.headers["referrer-policy"] == "no-referrer"


def test_warn_match_reaches_the_site_with_the_action_header(
    stack: Stack, http: httpx2.Client
) -> None:
    response = http.get(f"{stack.gateway.url}/search?q={WARN_TERM}")
    assert response.status_code == 200
    assert response.json()["headers"]["deterrence-action"] == "warn"


def test_client_cannot_forge_the_action_header(stack: Stack, http: httpx2.Client) -> None:
    headers = {"Deterrence-Action": "warn"}
    search = http.get(f"{stack.gateway.url}/search?q=tea", headers=headers).json()
    other = http.get(f"{stack.gateway.url}/about", headers=headers).json()
    assert "deterrence-action" not in search["headers"]
    assert "deterrence-action" not in other["headers"]


NON_SEARCH_PATHS = ("/about", "/searching", "/search/more")


@pytest.mark.parametrize(
    "target", ["/", "/static/site.css", *(f"{p}?q={BLOCK_TERM}" for p in NON_SEARCH_PATHS)]
)
def test_other_paths_never_call_the_decision_service(
    stack: Stack, http: httpx2.Client, target: str
) -> None:
    before = decisions(stack.authz)
    response = http.get(f"{stack.gateway.url}{target}")
    assert response.status_code == 200
    assert response.json()["target"] == target
    assert decisions(stack.authz) == before


def test_nginx_logs_never_hold_the_search(stack: Stack, http: httpx2.Client) -> None:
    http.get(f"{stack.gateway.url}/search?q={BLOCK_TERM}")
    http.get(f"{stack.gateway.url}/search?q={WARN_TERM}")
    http.get(f"{stack.gateway.url}/%73earch?q={BLOCK_TERM}")
    logs = stack.gateway.logs()
    assert '"GET /search"' in logs  # searches are logged, without their query
    for line in logs.splitlines():
        if BLOCK_TERM in line or WARN_TERM in line:
            # Only the non-search requests of other tests: those are the site's business.
            assert any(f"GET {p}?" in line for p in NON_SEARCH_PATHS), line


def test_search_fails_open_when_the_decision_service_is_down(tmp_path: Path) -> None:
    site = RecordingSite()
    with (
        serve(site) as site_url,
        nginx(tmp_path, site=int(site_url.rsplit(":", 1)[1]), authz=free_port()) as gateway,
        httpx2.Client(trust_env=False, timeout=10) as http,
    ):
        response = http.get(f"{gateway.url}/search?q=tea")
    assert response.status_code == 200
    assert site.targets() == ["/search?q=tea"]
