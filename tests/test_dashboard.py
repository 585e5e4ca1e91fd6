"""The dashboard: access control, exposure check, suppression, rendering, a real browser."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from browser_support import ARTIFACTS, chromium
from live_uvicorn import free_port, serve
from seed_store import seed

from deterrence.dashboard import Dashboard, DashboardExposureError, check_exposure
from deterrence.metrics import PAGE_VIEWS, Recorder
from deterrence.settings import Settings
from deterrence.store import Store, encode_labels, hour_key

REPO = Path(__file__).resolve().parent.parent
TOKEN = "zorblax-test-token-7f3a9c"
PATH = "/_deterrence/dashboard"
NOW = datetime.now(UTC)
END = NOW.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    seed(Store(tmp_path), end=END, days=20)
    return tmp_path


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


def test_a_token_is_required(seeded: Path) -> None:
    app = Dashboard(Settings(data_dir=seeded, dashboard_token=TOKEN))  # type: ignore[arg-type]
    with serve(app) as url:
        missing = httpx2.get(url + PATH)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "Interventions" not in missing.text
        assert httpx2.get(url + PATH, headers=bearer("wrong")).status_code == 401
        # Credentials in the URL end up in logs and history: never accepted.
        assert httpx2.get(url + PATH, params={"token": TOKEN}).status_code == 401
        ok = httpx2.get(url + PATH, headers=bearer())
        assert ok.status_code == 200
        assert "Interventions by category" in ok.text


def test_basic_auth(seeded: Path) -> None:
    settings = Settings(
        data_dir=seeded,
        dashboard_user="analyst",
        dashboard_password="quendrific-pass",  # type: ignore[arg-type]
    )
    with serve(Dashboard(settings)) as url:
        challenge = httpx2.get(url + PATH)
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"] == 'Basic realm="deterrence dashboard"'
        assert httpx2.get(url + PATH, headers=basic("analyst", "nope")).status_code == 401
        assert (
            httpx2.get(url + PATH, headers=basic("someone", "quendrific-pass")).status_code == 401
        )
        assert httpx2.get(url + PATH, headers={"authorization": "Basic %%%"}).status_code == 401
        assert (
            httpx2.get(url + PATH, headers=basic("analyst", "quendrific-pass")).status_code == 200
        )


def test_without_credentials_only_loopback_is_served(seeded: Path) -> None:
    settings = Settings(data_dir=seeded)
    app = Dashboard(settings)
    with serve(app) as url:  # uvicorn on 127.0.0.1: the client is loopback
        assert httpx2.get(url + PATH).status_code == 200

    async def from_elsewhere() -> httpx2.Response:
        # A remote client cannot be produced on loopback; the ASGI scope can say so.
        transport = httpx2.ASGITransport(app=app, client=("203.0.113.9", 40000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://dash") as client:
            return await client.get(PATH)

    remote = asyncio.run(from_elsewhere())
    assert remote.status_code == 403
    assert "DETERRENCE_DASHBOARD_TOKEN" in remote.text


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "dashboard.example"])
def test_refuses_to_start_exposed_without_credentials(host: str) -> None:
    with pytest.raises(DashboardExposureError, match="DETERRENCE_DASHBOARD_TOKEN"):
        check_exposure(host, Settings())
    check_exposure(host, Settings(dashboard_token=TOKEN))  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_credentials(host: str) -> None:
    check_exposure(host, Settings())


def test_small_counts_are_suppressed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    hour = hour_key(NOW - timedelta(hours=2))
    store.write(
        {
            (hour, PAGE_VIEWS, encode_labels({"variant": "harm", "locale": "en"})): 7,
            (hour, PAGE_VIEWS, encode_labels({"variant": "control", "locale": "en"})): 250,
            (
                hour,
                "deterrence_help_clicks_total",
                encode_labels({"service": "helpline", "variant": "control"}),
            ): 3,
        }
    )
    html = Dashboard(Settings(data_dir=tmp_path)).render("7d")
    rows = re.findall(r"<tr[^>]*><td>(harm|control)</td>(.*?)</tr>", html, re.S)
    cell = r'<td class="num[^"]*">([^<]*)</td>'
    cells = {name: re.findall(cell, rest) for name, rest in rows}
    assert cells["harm"][:2] == ["&lt;10", "&lt;10"]
    assert cells["control"][:3] == ["250", "&lt;10", "—"]  # no rate from a suppressed count
    assert ">7<" not in html and ">3<" not in html
    assert "Counts below 10 are shown as &lt;10." in html
    # With k = 1 the same numbers appear.
    shown = Dashboard(Settings(data_dir=tmp_path, min_count=1)).render("7d")
    assert ">7<" in shown


def test_renders_with_data_and_the_privacy_headers(seeded: Path) -> None:
    app = Dashboard(Settings(data_dir=seeded, dashboard_token=TOKEN))  # type: ignore[arg-type]
    with serve(app) as url:
        response = httpx2.get(url + PATH, params={"range": "30d"}, headers=bearer())
        head = httpx2.head(url + PATH, headers=bearer())
        assert httpx2.post(url + PATH, headers=bearer()).status_code == 405
        assert httpx2.get(url + "/elsewhere", headers=bearer()).status_code == 404
    assert response.status_code == 200
    assert head.status_code == 200 and head.content == b""
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert "noindex" in headers["x-robots-tag"]
    assert "set-cookie" not in headers
    html = response.text
    assert "<script" not in html
    assert not re.search(r"\b(src|href)=\"?https?://", html), "nothing from another origin"
    assert html.count("<svg") >= 5
    for text in ("last 30 days", "demo-zorblax", "stop-it-now", "Chi-square test", "95 %"):
        assert text in html
    assert "keyword_lists/demo.toml:12: bad id" in html  # list status and errors


def test_includes_the_counts_of_its_own_recorder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, min_count=1)
    recorder = Recorder(settings, lists=[], variants=["harm"], locales=["en"], services=[])
    for _ in range(12):
        recorder.page_view(variant="harm", locale="en")
    html = Dashboard(settings, recorder=recorder).render("24h")
    assert re.search(r'<div class="value">12</div>', html)


@pytest.mark.browser
def test_screenshot_in_chromium(seeded: Path) -> None:
    app = Dashboard(Settings(data_dir=seeded, dashboard_token=TOKEN))  # type: ignore[arg-type]
    artifacts = ARTIFACTS
    artifacts.mkdir(exist_ok=True)
    with serve(app) as url, chromium() as browser:
        page = browser.new_page(
            viewport={"width": 1280, "height": 900}, extra_http_headers=bearer()
        )
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        response = page.goto(url + PATH + "?range=30d")
        assert response is not None and response.status == 200
        # The stylesheet applied (the CSP hash matches): the header bar is coloured.
        colour = page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(11, 79, 138)"
        assert page.locator("svg.chart").count() >= 5
        assert console == [], console  # no CSP violations or other errors
        # The range form works without script.
        page.select_option("#range", "7d")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"range=7d"))
        assert "last 7 days" in page.content()
        page.goto(url + PATH + "?range=30d")
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert (artifacts / "dashboard.png").stat().st_size > 20_000


def test_a_broken_reload_shows_on_the_dashboard_of_the_running_demo(tmp_path: Path) -> None:
    """From a broken list file to the dashboard page, on the demo as an operator runs
    it: the failed reload with file and line, counted, and the old lists answer."""
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "alpha.toml").write_text('id = "alpha"\ncategory = "testing"\nterms = ["zorblax"]\n')
    port = free_port()
    env = {
        **os.environ,
        "DETERRENCE_DATA_DIR": str(tmp_path / "data"),
        "DETERRENCE_DASHBOARD_TOKEN": TOKEN,
        "DETERRENCE_BLOCK_STATUS": "451",
        "DETERRENCE_MIN_COUNT": "1",
    }
    command = [sys.executable, "-m", "deterrence", "demo", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--lists", str(lists)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"

    def status(query: str) -> int:
        return httpx2.get(f"{base}/search", params={"q": query}, timeout=10).status_code

    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0].decode()
            try:
                if status("weather") == 200:
                    break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.1)
        (lists / "gamma.txt").write_text("plimsquark\nx\n")  # line 2: a term too short
        process.send_signal(signal.SIGHUP)
        page = ""
        while "gamma.txt:2:" not in page:
            assert time.monotonic() < deadline + 30, "the failed reload never showed"
            time.sleep(0.1)
            page = httpx2.get(base + PATH, headers=bearer(), timeout=10).text
        reload_row = r'<tr><td class="nowrap">[^<]*</td><td class="error">error</td><td>(.*?)</td>'
        failed = re.findall(reload_row, page)
        assert len(failed) == 1 and f"{lists / 'gamma.txt'}:2: " in failed[0]  # file and line
        errors = dict(re.findall(r'<tr><td>(\w+)</td><td class="num">([^<]*)</td></tr>', page))
        assert errors["list_invalid"] == "1"
        assert status("zorblax") == 451 and status("plimsquark") == 200  # the old lists
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
