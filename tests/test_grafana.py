"""The Grafana dashboard's queries, evaluated by a real Prometheus scraping a real app.

Prometheus (Debian package ``prometheus``) runs on 127.0.0.1 with a temporary
config that scrapes the app under test every second while traffic flows; then every
PromQL expression in ``dashboards/deterrence.json`` is sent to Prometheus's HTTP API
and must return data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from live_uvicorn import free_port, serve
from starlette.types import ASGIApp

from deterrence.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "dashboards" / "deterrence.json"
PROVISIONING = REPO / "dashboards" / "provisioning"
# Grafana fills these in; with a 1 s scrape interval these windows hold enough samples.
GRAFANA_VARIABLES = {"$__rate_interval": "5s", "$__interval": "1s", "$__range": "1m"}

Drive = Callable[[str], None]
"""Send one round of traffic to the app at the given base URL."""


def dashboard_json() -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def expressions(node: object) -> list[str]:
    """Every ``expr`` in the dashboard, at any depth (rows may nest panels)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expressions(item))
    return found


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# --- the app under test (one fixture: swap in another app here) --------------------


@pytest.fixture
def app_under_test(tmp_path: Path) -> tuple[ASGIApp, Drive]:
    """The demo search site with the middleware; ``drive`` searches (innocent, block,
    warn) and follows the warning page's help links to the counting redirect."""
    from deterrence.demo import DEMO_TRIGGER, DEMO_WARN_TRIGGER, create_app

    app = create_app(Settings(data_dir=tmp_path / "data", flush_interval_seconds=1))
    help_link = re.compile(r'href="(/_deterrence/go/[^"]+)"')

    def drive(url: str) -> None:
        with httpx2.Client(base_url=url, timeout=10) as client:
            for query in ("dickens", "sea", DEMO_WARN_TRIGGER):
                client.get("/search", params={"q": query})
            page = client.get("/search", params={"q": DEMO_TRIGGER})
            for link in help_link.findall(page.text)[:2]:
                # The redirect points at the help service: never follow it off loopback.
                client.get(link.replace("&amp;", "&"), follow_redirects=False)

    return app, drive


# --- Prometheus ------------------------------------------------------------------


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    apt_log = Path("/tmp/apt.log")
    deadline = time.monotonic() + 300
    while path is None and apt_log.exists() and "done" not in apt_log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            break
        time.sleep(5)  # the Debian packages are still being installed
        path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("the prometheus binary is missing (Debian package prometheus)")
        pytest.skip("the prometheus binary is missing (Debian package prometheus)")
    return path


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Start Prometheus scraping 127.0.0.1:<port>; yields a starter returning its URL."""
    binary = prometheus_binary()
    processes: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> str:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "deterrence",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                }
            ],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    return url
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "prometheus did not start:\n" + (tmp_path / "prometheus.log").read_text()
                )
            time.sleep(0.2)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    response = httpx2.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


# --- tests -------------------------------------------------------------------------


def test_dashboard_json_is_a_grafana_dashboard() -> None:
    data = dashboard_json()
    assert data["uid"] == "deterrence-overview"
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = [p for p in data["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    used = " ".join(expressions(data))
    for metric in (
        "deterrence_requests_inspected_total",
        "deterrence_interventions_total",
        "deterrence_page_views_total",
        "deterrence_help_clicks_total",
        "deterrence_match_duration_seconds_bucket",
        "deterrence_list_terms",
        "deterrence_list_reloads_total",
        "deterrence_errors_total",
    ):
        assert metric in used, f"the dashboard does not show {metric}"
    datasource = yaml.safe_load((PROVISIONING / "datasources" / "deterrence.yaml").read_text())
    assert datasource["datasources"][0]["uid"] == variables["datasource"]["current"]["value"]
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "deterrence.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


@pytest.mark.prometheus
@pytest.mark.slow
def test_every_dashboard_query_returns_data(
    app_under_test: tuple[ASGIApp, Drive], prometheus: Callable[[int], str]
) -> None:
    app, drive = app_under_test
    with serve(app) as app_url:
        prometheus_url = prometheus(int(app_url.rsplit(":", 1)[1]))
        stop = threading.Event()

        def traffic() -> None:
            deadline = time.monotonic() + 120  # bounded, whatever happens
            while not stop.is_set() and time.monotonic() < deadline:
                drive(app_url)
                time.sleep(0.05)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while True:  # wait for a few scrapes with traffic in them
                samples = query(
                    prometheus_url,
                    "count_over_time(deterrence_requests_inspected_total[1m])",
                )
                if samples and min(int(s["value"][1]) for s in samples) >= 6:
                    break
                assert time.monotonic() < deadline, "prometheus did not scrape the app"
                time.sleep(0.5)
            assert query(prometheus_url, 'up{job="deterrence"}')[0]["value"][1] == "1"

            empty = []
            for expr in expressions(dashboard_json()):
                if not query(prometheus_url, substitute(expr)):
                    empty.append(expr)
            assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

            # And the numbers move: traffic shows up as interventions and help clicks.
            for expr in (
                "sum(increase(deterrence_interventions_total[1m]))",
                "sum(increase(deterrence_page_views_total[1m]))",
                "sum(increase(deterrence_help_clicks_total[1m]))",
            ):
                assert float(query(prometheus_url, expr)[0]["value"][1]) > 0, expr
        finally:
            stop.set()
            thread.join(timeout=30)
