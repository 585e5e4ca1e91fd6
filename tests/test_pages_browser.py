"""The warning page in a real browser: headless Debian Chromium driven by Playwright,
against a real uvicorn server on 127.0.0.1.

Checks what only a browser can tell: the layout at 360 and 1280 px (full-page
screenshots land in ``test-artifacts/``), that the page requests nothing from any
other origin and trips no CSP violation, axe-core's WCAG 2.2 AA rules, keyboard use
with visible focus, right-to-left layout for Arabic, and that following a help link
tells the help service nothing (no ``Referer``).

Needs ``/usr/bin/chromium`` and the ``playwright`` package: when either is missing
the tests fail if ``CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_browser
from live_uvicorn import serve
from page_support import make_pages
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from deterrence.matcher import Matcher
from deterrence.metrics import Recorder
from deterrence.pages import WarningPages
from deterrence.services import HelpDirectory, HelpService
from deterrence.settings import Settings

pytestmark = pytest.mark.browser

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
MATCH = Matcher.from_terms(["zorblax"]).match("zorblax")
# Accept-Language for each page locale: with a region, so country services show too.
LANGUAGES = {"en": "en-GB,en;q=0.9", "de": "de-DE,de;q=0.9", "ar": "ar"}


@dataclass
class Site:
    base: str
    pages: WarningPages
    recorder: Recorder
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_browser()
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data_dir, store_enabled=False)  # shipped help services
    pages, recorder = make_pages(settings)

    async def search(request: Request) -> Response:
        variant = request.query_params.get("v") or pages.choose_variant()
        return pages.block_response(request.headers, MATCH, variant, 200)

    async def results(request: Request) -> Response:
        # A results page of a site whose list action is "warn": its own page, our banner.
        banner = pages.banner_html(request.headers, MATCH, pages.choose_variant())
        return Response(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>Results</title><link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="{pages.prefix}/static/banner.css">'
            "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
            "padding:0 1rem}</style></head><body><main><h1>Search results</h1>"
            f"{banner}<p>Nothing found.</p></main></body></html>",
            media_type="text/html",
        )

    app = Starlette(
        routes=[
            Route("/search", search),
            Route("/results", results),
            Mount(pages.prefix, app=pages.app),
        ]
    )
    with serve(app) as base:
        yield Site(base, pages, recorder)


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Visit:
    page: Any
    requests: list[str]
    problems: list[str]


@pytest.fixture
def visit(browser: Any, site: Site) -> Iterator[Any]:
    """Open the blocked search page in a fresh context; record every request and
    every console error or failed request."""
    contexts: list[Any] = []

    def open_page(
        locale: str = "en",
        width: int = 1280,
        *,
        variant: str = "harm",
        color_scheme: str = "light",
        path: str = "/search",
    ) -> Visit:
        context = browser.new_context(
            viewport={"width": width, "height": 800},
            locale=LANGUAGES[locale].split(",")[0],
            color_scheme=color_scheme,
            extra_http_headers={"Accept-Language": LANGUAGES[locale]},
        )
        contexts.append(context)
        page = context.new_page()
        visit = Visit(page, [], [])
        page.on("request", lambda request: visit.requests.append(request.url))
        page.on(
            "console",
            lambda message: (
                visit.problems.append(message.text)
                if message.type in ("error", "warning")
                else None
            ),
        )
        page.on("requestfailed", lambda request: visit.problems.append(f"failed {request.url}"))
        response = page.goto(f"{site.base}{path}?q=zorblax&v={variant}")
        assert response is not None and response.status == 200
        return visit

    yield open_page
    for context in contexts:
        context.close()


def open_all_details(page: Any) -> None:
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")


# --- layout, requests, screenshots ---------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "de", "ar"])
@pytest.mark.parametrize("width", [360, 1280])
def test_page_renders_at_phone_and_desktop_widths(
    visit: Any, site: Site, locale: str, width: int
) -> None:
    shown = visit(locale, width)
    page = shown.page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"pages-{locale}-{width}.png", full_page=True)
    open_all_details(page)
    page.screenshot(path=ARTIFACTS / f"pages-{locale}-{width}-open.png", full_page=True)

    # Nothing from any other origin (the page needs nothing but its own HTML).
    assert shown.requests, "no request recorded"
    assert all(url.startswith(site.base + "/") for url in shown.requests), shown.requests
    assert shown.problems == []  # no CSP violation, no failed load
    assert page.context.cookies() == []
    assert (
        page.evaluate(
            "document.querySelectorAll('script, img, iframe, link[rel=stylesheet]').length"
        )
        == 0
    )
    # No horizontal scrolling, even with every section open.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The message comes first, in a readable size.
    h1 = page.locator("h1")
    assert h1.is_visible()
    assert (
        float(page.evaluate("parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)"))
        >= 24
    )
    assert page.locator("#help .button").first.is_visible()
    if locale == "en":  # the rendered text, spaces included ("Call 0808 ...", not "Call0808")
        call = page.locator("#help a[href^='tel:']").first.inner_text()
        assert call.startswith("Call ") and call[5].isdigit(), call


def test_a_dark_color_scheme_is_used_when_preferred(visit: Any) -> None:
    light = visit("en", 360, color_scheme="light").page
    dark = visit("en", 360, color_scheme="dark").page
    background = "getComputedStyle(document.body).backgroundColor"
    assert light.evaluate(background) != dark.evaluate(background)
    ARTIFACTS.mkdir(exist_ok=True)
    dark.screenshot(path=ARTIFACTS / "pages-en-360-dark.png", full_page=True)


# --- accessibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "de", "ar"])
@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_axe_finds_no_wcag_22_aa_violations(visit: Any, locale: str, color_scheme: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    page = visit(locale, 360, color_scheme=color_scheme).page
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    for state in ("closed", "open"):
        if state == "open":
            open_all_details(page)  # axe skips hidden content: check the panels too
        results = axe.run(page, options=options)
        assert results.violations_count == 0, f"{state}:\n{results.generate_report()}"
        assert results.response["testEngine"]["version"].startswith("4.")


FOCUS_STYLE = """el => {
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(),
    href: el.getAttribute('href'),
    focusVisible: el.matches(':focus-visible'),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth),
    width: box.width,
    height: box.height,
  };
}"""


def tab_through(page: Any, limit: int = 80) -> list[dict[str, Any]]:
    """Press Tab until focus leaves the page or returns to the first element."""
    stops: list[dict[str, Any]] = []
    # Start before the first focusable element: from it, Shift+Tab leaves the page.
    page.locator("a, summary").first.focus()
    page.keyboard.press("Shift+Tab")
    for _ in range(limit):
        page.keyboard.press("Tab")
        handle = page.evaluate_handle("document.activeElement")
        info = page.evaluate(FOCUS_STYLE, handle)
        if info["tag"] == "body" or (stops and info == stops[0]):
            break
        stops.append(info)
    return stops


def test_everything_is_reachable_by_keyboard_with_visible_focus(visit: Any) -> None:
    page = visit("en", 1280).page
    closed = tab_through(page)
    assert closed[0]["href"] == "#help", "the skip link comes first"
    assert [s["tag"] for s in closed].count("summary") == 3

    # Open the sections from the keyboard: Enter on the first, Space on the others.
    summaries = page.locator("summary")
    for index, key in enumerate(["Enter", "Space", "Space"]):
        summaries.nth(index).focus()
        page.keyboard.press(key)
        assert page.locator("details").nth(index).evaluate("d => d.open"), key
    page.locator("summary").nth(1).focus()
    page.keyboard.press("Enter")
    assert not page.locator("details").nth(1).evaluate("d => d.open"), "Enter closes again"
    page.keyboard.press("Enter")

    stops = tab_through(page)
    reached = {s["href"] for s in stops if s["tag"] == "a"}
    links = set(page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"))
    assert links <= reached, f"not reachable by Tab: {links - reached}"
    help_links = {h for h in links if h.startswith(("/_deterrence/go/", "tel:"))}
    assert len(help_links) >= 3
    for stop in stops:
        assert stop["focusVisible"], stop
        assert stop["outlineStyle"] != "none" and stop["outlineWidth"] >= 2, stop
        if stop["href"] != "#help":  # the skip link is off-screen until focused
            # WCAG 2.2 target size (2.5.8): at least 24 by 24 CSS pixels.
            assert stop["height"] >= 24 and stop["width"] >= 24, stop


def test_skip_link_moves_focus_to_help(visit: Any) -> None:
    page = visit("en", 360).page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#help"
    box = page.evaluate("document.activeElement.getBoundingClientRect().top")
    assert box >= 0, "the skip link is visible when focused"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#help"


@pytest.mark.parametrize("locale", ["en", "ar"])
def test_warning_banner_on_a_results_page(visit: Any, site: Site, locale: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    shown = visit(locale, 360, path="/results")
    page = shown.page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"pages-banner-{locale}-360.png", full_page=True)
    assert all(url.startswith(site.base + "/") for url in shown.requests), shown.requests
    assert any(url.endswith("/static/banner.css") for url in shown.requests)
    assert shown.problems == []
    banner = page.locator(".deterrence-banner")
    assert banner.get_attribute("dir") == ("rtl" if locale == "ar" else "ltr")
    assert banner.evaluate("e => getComputedStyle(e).borderInlineStartWidth") == "6px"
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    results = Axe().run(page, options=options)
    assert results.violations_count == 0, results.generate_report()
    stops = tab_through(page)
    links = page.eval_on_selector_all(
        ".deterrence-banner a[href]", "els => els.map(e => e.getAttribute('href'))"
    )
    assert any(h.startswith("/_deterrence/go/") for h in links)
    assert set(links) <= {s["href"] for s in stops}
    assert all(s["focusVisible"] and s["outlineWidth"] >= 2 for s in stops), stops


# --- right to left ---------------------------------------------------------------------------

TEXT_BOX = """selector => {
  const el = document.querySelector(selector);
  const range = document.createRange();
  range.selectNodeContents(el);
  const text = range.getBoundingClientRect();
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return {
    textLeft: text.left, textRight: text.right,
    left: box.left + parseFloat(style.paddingLeft),
    right: box.right - parseFloat(style.paddingRight),
    direction: style.direction,
  };
}"""


def test_arabic_lays_out_right_to_left(visit: Any) -> None:
    arabic = visit("ar", 1280).page
    english = visit("en", 1280).page
    assert arabic.evaluate("document.documentElement.getAttribute('dir')") == "rtl"
    assert arabic.evaluate("document.documentElement.lang") == "ar"
    for selector in ("h1", "#help-heading", "#guide-heading"):
        rtl = arabic.evaluate(TEXT_BOX, selector)
        assert rtl["direction"] == "rtl"
        assert abs(rtl["textRight"] - rtl["right"]) <= 2, (selector, rtl)
        ltr = english.evaluate(TEXT_BOX, selector)
        assert ltr["direction"] == "ltr"
        assert abs(ltr["textLeft"] - ltr["left"]) <= 2, (selector, ltr)
    # The short help heading is right-aligned: it leaves space on the left, not the right.
    heading = arabic.evaluate(TEXT_BOX, "#help-heading")
    assert heading["textLeft"] - heading["left"] > 100
    # The accent border is on the starting side: right in Arabic, left in English.
    border = "s => getComputedStyle(document.querySelector(s)).borderRightWidth"
    assert arabic.evaluate(border, ".help-now") == "6px"
    assert english.evaluate(border, ".help-now") == "1px"
    # Phone numbers keep their digit order inside Arabic text.
    numbers = arabic.eval_on_selector_all(
        "a[href^='tel:']", "els => els.map(e => getComputedStyle(e).direction)"
    )
    assert all(direction == "ltr" for direction in numbers)


# --- following a help link -------------------------------------------------------------------


def test_following_a_help_link_counts_it_and_sends_no_referer(browser: Any, tmp_path: Path) -> None:
    """A help service on another origin (a second loopback server) sees the click
    arrive without any ``Referer``, and the warning site counted it."""
    arrivals: list[dict[str, str]] = []

    async def help_page(request: Request) -> Response:
        arrivals.append(dict(request.headers))
        return Response("<!doctype html><title>help</title>", media_type="text/html")

    with serve(Starlette(routes=[Route("/start", help_page)])) as help_base:
        service = HelpService(
            id="loopback-help",
            name="Loopback Help",
            countries=("INT",),
            kinds=("chat",),
            audiences=("self",),
            url=f"{help_base}/start",
            phone=None,
            languages=("en",),
            hours=None,
            anonymous=True,
            source=f"{help_base}/about",
            verified=date(2026, 11, 1),
        )
        settings = Settings(data_dir=tmp_path, store_enabled=False)
        pages = WarningPages(settings, directory=HelpDirectory([service]))
        recorder = Recorder(
            settings,
            lists=(),
            variants=pages.variants,
            locales=pages.locales,
            services=pages.service_ids,
        )
        pages.recorder = recorder

        async def search(request: Request) -> Response:
            return pages.block_response(request.headers, MATCH, "legal", 200)

        app = Starlette(routes=[Route("/search", search), Mount(pages.prefix, app=pages.app)])
        with serve(app) as base:
            context = browser.new_context()
            try:
                page = context.new_page()
                page.goto(f"{base}/search?q=zorblax")
                with page.expect_navigation(url=f"{help_base}/start"):
                    page.locator("#help a.button").click()
            finally:
                context.close()

    assert len(arrivals) == 1
    assert "referer" not in arrivals[0], "the help service must not learn the search page"
    assert "zorblax" not in str(arrivals[0])
    assert "cookie" not in arrivals[0]
    labels = {"service": "loopback-help", "variant": "legal"}
    assert recorder.registry.get_sample_value("deterrence_help_clicks_total", labels) == 1
