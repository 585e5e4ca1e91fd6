"""The demo search site end to end: a real server and a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from browser_support import ARTIFACTS, chromium
from live_uvicorn import serve

from deterrence.demo import DEMO_TRIGGER, DEMO_WARN_TRIGGER, create_app, load_catalogue, search
from deterrence.settings import Settings


def test_catalogue_search_ranks_and_reads_canonical_forms() -> None:
    books = load_catalogue()
    assert len(books) >= 40
    assert [b.title for b in search(books, "dickens")][:2] == [
        "Great Expectations",
        "A Tale of Two Cities",
    ]
    assert search(books, "BRONTE")  # Brontë, through canonicalization
    assert search(books, "") == []


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("demo-data"))
    with serve(create_app(settings)) as url:
        yield url


def test_demo_serves_results_warning_banner_metrics_and_dashboard(demo: str) -> None:
    assert "Great Expectations" in httpx2.get(f"{demo}/search?q=dickens").text
    warning = httpx2.get(f"{demo}/search?q={DEMO_TRIGGER}")
    assert "Great Expectations" not in warning.text and "<html" in warning.text
    assert "deterrence-banner" in httpx2.get(f"{demo}/search?q={DEMO_WARN_TRIGGER}").text
    assert "deterrence_requests_inspected_total" in httpx2.get(f"{demo}/metrics").text
    assert httpx2.get(f"{demo}/_deterrence/dashboard").status_code == 200


@pytest.mark.browser
def test_demo_search_in_a_real_browser(demo: str) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{demo}/")
        page.fill("#q", "sea adventure")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "Moby-Dick" in page.inner_text("main")

        page.fill("#q", "z0rbl4x")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        heading = page.inner_text("h1")
        assert heading and "Moby-Dick" not in page.content()
        _screenshot(page, "demo-warning.png")

        page.goto(f"{demo}/")
        page.fill("#q", DEMO_WARN_TRIGGER)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator(".deterrence-banner").is_visible()
        _screenshot(page, "demo-banner.png")

        origins = {urlsplit(url).netloc for url in requests}
        assert origins == {urlsplit(demo).netloc}


def _screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.browser
def test_dashboard_screenshot_with_demo_traffic(demo: str) -> None:
    """Traffic through the demo, then the dashboard as a person sees it
    (test-artifacts/dashboard-demo.png; the README shows a copy)."""
    queries = ["dickens", "sea", "z0rbl4x", DEMO_TRIGGER, DEMO_WARN_TRIGGER, "poetry", "zor-blax"]
    with httpx2.Client(base_url=demo, timeout=10) as client:
        for i in range(420):
            client.get("/search", params={"q": queries[i % len(queries)]})
        for i in range(60):
            variant = ("harm", "legal", "help")[i % 3]
            service = ("stop-it-now-uk", "iwf")[i % 2]
            response = client.get(f"/_deterrence/go/{service}", params={"v": variant})
            assert response.status_code == 303
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{demo}/_deterrence/dashboard")
        assert "Interventions" in page.inner_text("body")
        _screenshot(page, "dashboard-demo.png")
