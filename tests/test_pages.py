"""Warning pages: what a browser, a JSON client and the counters see.

Requests go through Starlette's TestClient to a small site that mounts ``pages.app``
and blocks ``/search`` with ``pages.block_response``, as the middleware does. Counts
are read back from a real :class:`deterrence.metrics.Recorder`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import statistics
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx2
import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from page_support import make_pages
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from deterrence.matcher import Matcher
from deterrence.metrics import Recorder
from deterrence.pages import (
    PagesError,
    WarningPages,
    load_variants,
    prefers_json,
)
from deterrence.resources import PAGES_DIR
from deterrence.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHIPPED_LOCALES = ("ar", "de", "en", "es", "fi", "fr", "nl", "sv")
CANARY = "zorblaxcanary7731"
MATCH = Matcher.from_terms(["zorblax"]).match("zorblax")


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "help_services_path": FIXTURES / "help_services.toml",
        "data_dir": tmp_path / "data",
        "store_enabled": False,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def site(pages: WarningPages) -> Starlette:
    """A search site whose every search is blocked, as the middleware would do it."""

    async def search(request: Request) -> Response:
        return pages.block_response(request.headers, MATCH, pages.choose_variant(), 200)

    return Starlette(routes=[Route("/search", search), Mount(pages.prefix, app=pages.app)])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def pages_and_recorder(settings: Settings) -> tuple[WarningPages, Recorder]:
    return make_pages(settings)


@pytest.fixture
def pages(pages_and_recorder: tuple[WarningPages, Recorder]) -> WarningPages:
    return pages_and_recorder[0]


@pytest.fixture
def recorder(pages_and_recorder: tuple[WarningPages, Recorder]) -> Recorder:
    return pages_and_recorder[1]


@pytest.fixture
def client(pages: WarningPages) -> Iterator[TestClient]:
    with TestClient(site(pages), follow_redirects=False) as test_client:
        yield test_client


def count(recorder: Recorder, metric: str, **labels: str) -> float:
    return recorder.registry.get_sample_value(metric, labels) or 0.0


def assert_privacy_headers(response: httpx2.Response | Response) -> None:
    headers = response.headers
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert "noindex" in headers["x-robots-tag"]
    assert "set-cookie" not in headers
    directives = (p.strip().partition(" ") for p in headers["content-security-policy"].split(";"))
    csp = {name: value for name, _, value in directives}
    assert csp["default-src"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert csp["form-action"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert "script-src" not in csp
    assert "'unsafe-inline'" not in headers["content-security-policy"]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of <style> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def parse(html: str) -> Elements:
    elements = Elements()
    elements.feed(html)
    return elements


# --- headers and privacy ----------------------------------------------------------


def test_every_response_carries_the_privacy_headers(client: TestClient) -> None:
    responses = [
        client.get(f"/search?q={CANARY}"),
        client.get(f"/search?q={CANARY}", headers={"Accept": "application/json"}),
        client.get("/_deterrence/warning"),
        client.get("/_deterrence/go/helpline-gb?v=harm"),
        client.get("/_deterrence/go/no-such-service"),
        client.get("/_deterrence/static/banner.css"),
        client.get("/_deterrence/nothing-here"),
        client.post("/_deterrence/warning"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 303, 404, 200, 404, 405]
    for response in responses:
        assert_privacy_headers(response)


def test_inline_style_is_allowed_by_its_hash_and_nothing_else_is_loaded(
    client: TestClient,
) -> None:
    response = client.get("/search?q=zorblax")
    html = response.text
    elements = parse(html)
    assert len(elements.styles) == 1
    digest = base64.b64encode(hashlib.sha256(elements.styles[0].encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in response.headers["content-security-policy"]
    tags = {tag for tag, _ in elements.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "form", "base"}
    for _, attrs in elements.tags:
        assert "style" not in attrs
        assert not any(name.startswith("on") for name in attrs)
    for tag, attrs in elements.tags:
        for name in ("href", "src", "action"):
            value = attrs.get(name)
            if value is not None:
                # Same origin, a phone number, or the empty inline favicon: no other origin.
                assert value.startswith(("/", "#", "tel:", "data:")), (tag, value)
                assert not value.startswith("//")


def test_the_query_is_never_reflected(client: TestClient) -> None:
    """The canary appears in the URL of every request; it must appear in no response."""
    requests = [
        ("/search", {"q": CANARY}, {}),
        ("/search", {"q": CANARY}, {"Accept": "application/json"}),
        ("/search", {"q": f"<b>{CANARY}</b>"}, {"Accept-Language": "ar"}),
        ("/_deterrence/warning", {"q": CANARY, "v": CANARY}, {}),
        ("/_deterrence/go/helpline-gb", {"v": CANARY, "q": CANARY}, {}),
        (f"/_deterrence/go/{CANARY}", {"q": CANARY}, {}),
        (f"/_deterrence/static/{CANARY}.css", {}, {}),
    ]
    for path, params, headers in requests:
        response = client.get(path, params=params, headers=headers)
        assert CANARY not in response.text, path
        assert CANARY.encode() not in response.content
        for name, value in response.headers.items():
            assert CANARY not in value, (path, name)


# --- the page ---------------------------------------------------------------------------


def test_html_page_says_what_the_evidence_says_a_warning_should(client: TestClient) -> None:
    for variant in ("harm", "legal", "help"):
        response = client.get(
            "/_deterrence/warning", params={"v": variant}, headers={"Accept-Language": "en-GB"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-language"] == "en"
        text = re.sub(r"\s+", " ", response.text)
        assert re.search(r"illegal|a crime", text), variant
        assert "real child" in text, variant
        assert "Confidential help is available now" in text
        assert "report it anonymously" in text, variant
        for audience in ("self", "report", "others"):
            assert f'<details id="{audience}">' in text
        # Help links go through the counting redirect with the variant.
        assert f'href="/_deterrence/go/helpline-gb?v={variant}"' in text
        assert 'href="tel:08000001111"' in text


def test_guided_sections_lead_to_the_right_kind_of_service(pages: WarningPages) -> None:
    html = pages.render_page("en", "harm", "en-GB")
    sections = {
        audience: html.split(f'<details id="{audience}">', 1)[1].split("</details>", 1)[0]
        for audience in ("self", "report", "others")
    }
    assert "go/helpline-gb" in sections["self"]
    assert "go/selfhelp-int" in sections["self"]
    assert "go/hotline-gb" not in sections["self"]
    assert "go/hotline-gb" in sections["report"]
    assert "go/report-int" in sections["report"]
    assert "go/helpline-gb" not in sections["report"]
    assert "go/helpline-gb" in sections["others"]
    assert "emergency number" in sections["others"]


def test_services_follow_the_visitors_country(client: TestClient) -> None:
    german = client.get("/search?q=zorblax", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert german.headers["content-language"] == "de"
    primary = german.text.split('class="actions"', 1)[1].split("</div>", 1)[0]
    assert "go/hilfe-de" in primary
    assert 'href="tel:+498000002222"' in primary
    assert "go/helpline-gb" not in german.text
    # No country in the header: international services only.
    plain = client.get("/search?q=zorblax", headers={"Accept-Language": "de"})
    assert "go/selfhelp-int" in plain.text
    assert "go/hilfe-de" not in plain.text


def test_default_country_applies_without_a_region(tmp_path: Path) -> None:
    pages, _ = make_pages(make_settings(tmp_path, default_country="GB"))
    html = pages.render_page("fr", "legal", "fr")
    assert "go/helpline-gb" in html


def test_locale_negotiation(pages: WarningPages) -> None:
    assert pages.locales == SHIPPED_LOCALES
    cases = {
        None: "en",
        "": "en",
        "*": "en",
        "de-AT,de;q=0.9,en;q=0.5": "de",
        "fr-CH, en;q=0.5": "fr",
        "pt-BR,pt;q=0.9": "en",
        "pt-BR, nl;q=0.3": "nl",
        "de;q=0, sv": "sv",
        "en;q=0.1, fi;q=0.9": "fi",
        "AR-EG": "ar",
        "es-419": "es",
        "x" * 5000: "en",
        "de;q=abc, nl": "nl",
    }
    for header, locale in cases.items():
        assert pages.negotiate_locale(header) == locale, header


def test_arabic_page_is_right_to_left(pages: WarningPages) -> None:
    html = pages.render_page("ar", "harm", "ar")
    assert '<html lang="ar" dir="rtl">' in html
    # Phone numbers stay left to right inside the Arabic text.
    assert 'dir="ltr"' in html or "tel:" not in html
    css = (PAGES_DIR / "static" / "warning.css").read_text()
    # Logical properties only: no physical left/right that would not flip.
    assert not re.search(r"(?<![-\w])(left|right)\s*:|(margin|padding|border)-(left|right)", css)


@pytest.mark.parametrize("locale", SHIPPED_LOCALES)
def test_every_shipped_locale_and_variant_renders_with_the_shipped_services(
    locale: str, tmp_path: Path
) -> None:
    pages = WarningPages(Settings(data_dir=tmp_path, store_enabled=False))
    for variant in pages.variants:
        html = pages.render_page(locale, variant, f"{locale}-GB")
        tag = locale.replace("_", "-")
        assert f'<html lang="{tag}"' in html
        assert "/_deterrence/go/" in html
        # Shipped variants are translated by the catalogs: no English fallback marked.
        assert 'lang="en" dir="ltr"' not in html or locale == "en"


# --- JSON -------------------------------------------------------------------------------


def test_json_for_clients_that_prefer_it(client: TestClient, pages: WarningPages) -> None:
    response = client.get(
        f"/search?q={CANARY}",
        headers={"Accept": "application/json, text/plain, */*", "Accept-Language": "nl-NL"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["blocked"] is True
    assert document["locale"] == "nl"
    assert document["variant"] in pages.variants
    assert isinstance(document["message"], str) and document["message"]
    services = {s["id"]: s for s in document["services"]}
    assert set(services) == {"selfhelp-int", "report-int"}
    entry = services["selfhelp-int"]
    assert entry["url"] == "https://selfhelp.example.net/course"
    assert entry["link"] == f"/_deterrence/go/selfhelp-int?v={document['variant']}"
    assert entry["audiences"] == ["self"]


def test_prefers_json() -> None:
    assert prefers_json("application/json")
    assert prefers_json("application/json, text/plain, */*")
    assert prefers_json("text/html;q=0.5, application/json")
    assert not prefers_json(None)
    assert not prefers_json("*/*")
    assert not prefers_json("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert not prefers_json("text/html, application/json")
    assert not prefers_json("application/json;q=0, */*")
    assert not prefers_json("application/json;q=bogus")


# --- the counting redirect --------------------------------------------------------------


def test_go_redirects_to_the_configured_url_and_counts_the_click(
    client: TestClient, recorder: Recorder
) -> None:
    response = client.get("/_deterrence/go/helpline-gb?v=legal")
    assert response.status_code == 303
    assert response.headers["location"] == "https://helpline.example.org/start"
    assert response.content == b""
    metric = "deterrence_help_clicks_total"
    assert count(recorder, metric, service="helpline-gb", variant="legal") == 1
    client.get("/_deterrence/go/helpline-gb?v=made-up")
    client.get("/_deterrence/go/helpline-gb")
    assert count(recorder, metric, service="helpline-gb", variant="other") == 2
    # HEAD (link checkers, previews) redirects without counting.
    assert client.head("/_deterrence/go/hotline-gb?v=harm").status_code == 303
    assert count(recorder, metric, service="hotline-gb", variant="harm") == 0


def test_go_is_never_an_open_redirect(client: TestClient, recorder: Recorder) -> None:
    for path in (
        "/_deterrence/go/",
        "/_deterrence/go/https://evil.example.org/",
        "/_deterrence/go/evil.example.org",
        "/_deterrence/go/helpline-gb/",
        "/_deterrence/go/helpline-gb/extra",
        "/_deterrence/go/HELPLINE-GB",
        "/_deterrence/go/%2F%2Fevil.example.org",
        "/_deterrence/go/..%2Fwarning",
        "/_deterrence/go/helpline-gb%00",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "location" not in response.headers
    assert client.post("/_deterrence/go/helpline-gb").status_code == 405
    total = sum(
        sample.value
        for family in recorder.registry.collect()
        if family.name == "deterrence_help_clicks"
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    assert total == 0


def test_app_serves_full_paths_and_mounted_paths(pages: WarningPages) -> None:
    direct = TestClient(pages.app, follow_redirects=False)
    assert direct.get("/_deterrence/go/helpline-gb").status_code == 303
    assert direct.get("/_deterrence/warning").status_code == 200
    assert direct.get("/go/helpline-gb").status_code == 404  # outside the prefix
    assert direct.get("/warning").status_code == 404
    mounted = TestClient(Starlette(routes=[Mount("/_deterrence", app=pages.app)]))
    assert mounted.get("/_deterrence/warning").status_code == 200
    assert (
        mounted.get("/_deterrence/static/banner.css").headers["content-type"].startswith("text/css")
    )


# --- variants ---------------------------------------------------------------------------


def test_variants_are_chosen_uniformly_and_counted(
    client: TestClient, pages: WarningPages, recorder: Recorder
) -> None:
    assert pages.variants == ("harm", "legal", "help")
    draws = Counter(pages.choose_variant() for _ in range(6000))
    assert set(draws) == set(pages.variants)
    for variant in pages.variants:  # expected 2000 each; 6 standard deviations of slack
        assert 1780 < draws[variant] < 2220, draws
    for _ in range(30):
        response = client.get("/search?q=zorblax", headers={"Accept-Language": "fi"})
        assert "set-cookie" not in response.headers
    seen = {
        v: count(recorder, "deterrence_page_views_total", variant=v, locale="fi")
        for v in pages.variants
    }
    assert sum(seen.values()) == 30
    assert sum(1 for n in seen.values() if n) >= 2  # 30 draws from 3: all but certain


def test_warning_route_keeps_a_known_variant(client: TestClient, recorder: Recorder) -> None:
    for _ in range(3):
        client.get("/_deterrence/warning?v=legal", headers={"Accept-Language": "sv"})
    head = client.head("/_deterrence/warning?v=legal", headers={"Accept-Language": "sv"})
    assert head.status_code == 200
    assert head.headers["referrer-policy"] == "no-referrer"
    # Three views: HEAD (link checkers, previews) is not a view.
    assert count(recorder, "deterrence_page_views_total", variant="legal", locale="sv") == 3


def write_variants(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "variants.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_operator_variant_with_translations_falls_back_to_english(tmp_path: Path) -> None:
    path = write_variants(
        tmp_path,
        """
[variants.mysite]
headline = "Mysite headline <script>alert(1)</script>"
paragraphs = ["First paragraph & more.", "Second paragraph."]
[variants.mysite.translations.de]
headline = "Mysite Überschrift"
[variants.mysite.translations.ar]
headline = "عنوان"
paragraphs = ["فقرة"]
[variants.off]
enabled = false
headline = "Never shown"
paragraphs = ["Never."]
""",
    )
    pages = WarningPages(make_settings(tmp_path, variants_path=path))
    assert pages.variants == ("mysite",)
    german = pages.render_page("de", "mysite", "de-DE")
    assert "<h1>Mysite Überschrift</h1>" in german
    assert '<p lang="en" dir="ltr">First paragraph &amp; more.</p>' in german
    arabic = pages.render_page("ar", "mysite", "ar")
    assert "<h1>عنوان</h1>" in arabic and "<p>فقرة</p>" in arabic
    french = pages.render_page("fr", "mysite", "fr")
    assert '<h1 lang="en" dir="ltr">Mysite headline &lt;script&gt;' in french
    assert "<script>" not in french
    english = pages.render_page("en", "mysite", "en")
    assert "<h1>Mysite headline &lt;script&gt;" in english
    # An unknown variant never reaches the page: the first enabled one is used.
    response = pages.block_response(Headers({}), MATCH, "off", 200)
    assert b"Never shown" not in response.body


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[variants.Bad]\nheadline='x'\nparagraphs=['y']", "ids use"),
        ("[variants.other]\nheadline='x'\nparagraphs=['y']", "reserved"),
        ("[variants.a]\nheadline='x'\nparagraphs=['y']\ncolour='red'", "unknown keys"),
        ("[variants.a]\nparagraphs=['y']", "headline"),
        ("[variants.a]\nheadline='x'\nparagraphs=[]", "paragraphs"),
        ("[variants.a]\nheadline='x'\nparagraphs=['y']\nenabled=false", "disabled"),
        (
            "[variants.a]\nheadline='x'\nparagraphs=['y']\n[variants.a.translations.de]\nbody='z'",
            "may only",
        ),
        ("title = 'x'", "unknown top-level"),
        ("[variants", "variants.toml"),
    ],
)
def test_bad_variants_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write_variants(tmp_path, text)
    with pytest.raises(PagesError, match=message) as raised:
        load_variants(path)
    assert str(path) in str(raised.value)


def test_translations_for_a_locale_without_catalog_are_rejected(tmp_path: Path) -> None:
    path = write_variants(
        tmp_path,
        "[variants.a]\nheadline='x'\nparagraphs=['y']\n[variants.a.translations.it]\nheadline='z'",
    )
    with pytest.raises(PagesError, match="'it'"):
        WarningPages(make_settings(tmp_path, variants_path=path))


def test_shipped_variants_cite_their_evidence() -> None:
    text = (PAGES_DIR / "variants.toml").read_text(encoding="utf-8")
    for evidence in ("Ahmia", "Prichard", "Onebox"):
        assert evidence in text
    assert {v.id for v in load_variants(PAGES_DIR / "variants.toml")} >= {"harm", "legal", "help"}


# --- banner -----------------------------------------------------------------------------


def test_banner(pages: WarningPages) -> None:
    banner = pages.banner_html(Headers({"accept-language": "en-GB"}), MATCH, "harm")
    assert banner.startswith('<section class="deterrence-banner" lang="en" dir="ltr"')
    assert "Sexual images of children are records of real abuse" in banner
    assert 'href="/_deterrence/go/helpline-gb?v=harm"' in banner
    assert 'href="tel:08000001111"' in banner
    assert 'href="/_deterrence/warning?v=harm"' in banner
    arabic = pages.banner_html(Headers({"accept-language": "ar"}), MATCH, "legal")
    assert 'lang="ar" dir="rtl"' in arabic
    assert "/_deterrence/go/selfhelp-int?v=legal" in arabic


# --- failure and speed ------------------------------------------------------------------


class BrokenDirectory:
    def select(self, accept_language: str | None, default_country: str | None) -> object:
        raise RuntimeError("directory broke")


def test_a_render_failure_still_serves_a_warning_and_is_counted(
    pages: WarningPages, recorder: Recorder
) -> None:
    pages.directory = BrokenDirectory()  # type: ignore[assignment]
    response = pages.block_response(Headers({"accept-language": "de"}), MATCH, "help", 451)
    assert response.status_code == 451
    assert b"You can get confidential help to stop" in response.body
    assert response.headers["referrer-policy"] == "no-referrer"
    assert count(recorder, "deterrence_errors_total", kind="page_render") == 1
    assert count(recorder, "deterrence_page_views_total", variant="help", locale="en") == 1


def test_rendering_is_fast(pages: WarningPages) -> None:
    headers = Headers({"accept-language": "de-DE,de;q=0.9", "accept": "text/html"})
    ids = ("hilfe-de", "selfhelp-int", "report-int")
    uncached, cached = [], []
    for _ in range(200):
        start = time.perf_counter()
        pages._render_uncached("de", "harm", ids)
        uncached.append(time.perf_counter() - start)
        start = time.perf_counter()
        pages.block_response(headers, MATCH, "harm", 200)
        cached.append(time.perf_counter() - start)
    # Typically ~0.2 ms and ~0.03 ms; generous bounds for a shared machine.
    assert statistics.median(uncached) < 0.002
    assert statistics.median(cached) < 0.001


# --- catalogs ---------------------------------------------------------------------------


def catalogs() -> list[Path]:
    return sorted((PAGES_DIR / "locale").glob("*/LC_MESSAGES/messages.po"))


def extracted_messages() -> set[str]:
    """What `pybabel extract -F pages/babel.cfg` finds now, done in memory."""
    with (PAGES_DIR / "babel.cfg").open(encoding="utf-8") as fp:
        method_map, options_map = parse_mapping_cfg(fp)  # type: ignore[no-untyped-call]
    return {
        message
        for _, _, message, _, _ in extract_from_dir(str(REPO), method_map, options_map)
        if isinstance(message, str)
    }


def test_catalogs_are_the_shipped_locales() -> None:
    assert tuple(p.parent.parent.name for p in catalogs()) == SHIPPED_LOCALES


def _translations(catalog: Catalog) -> dict[tuple[object, str | None], object]:
    """What a compiled catalog serves: every translated, non-fuzzy message."""
    return {
        (message.id if isinstance(message.id, str) else tuple(message.id), message.context): (
            message.string if isinstance(message.string, str) else tuple(message.string)
        )
        for message in catalog
        if message.id and not message.fuzzy
    }


@pytest.mark.parametrize("po_path", catalogs(), ids=lambda p: p.parent.parent.name)
def test_committed_mo_matches_its_po(po_path: Path) -> None:
    """The same messages and plural rule; not the same bytes, since Babel writes
    its own version into the header it compiles."""
    with po_path.open("rb") as fp:
        source = read_po(fp)
    with po_path.with_suffix(".mo").open("rb") as fp:
        committed = read_mo(fp)
    hint = f"run: pybabel compile -d pages/locale ({po_path})"
    assert _translations(committed) == _translations(source), hint
    assert committed.plural_forms == source.plural_forms, hint


@pytest.mark.parametrize("po_path", catalogs(), ids=lambda p: p.parent.parent.name)
def test_every_catalog_translates_every_message(po_path: Path) -> None:
    expected = extracted_messages()
    assert len(expected) > 30
    with po_path.open("rb") as fp:
        catalog = read_po(fp)
    messages = {m.id: m for m in catalog if m.id}
    assert set(messages) == expected, "run pybabel extract + update (pages/TRANSLATING.md)"
    for message in messages.values():
        assert message.string, f"{po_path}: untranslated {message.id!r}"
        assert not message.fuzzy, f"{po_path}: fuzzy {message.id!r}"
        assert set(re.findall(r"%\(\w+\)s", str(message.string))) == set(
            re.findall(r"%\(\w+\)s", str(message.id))
        ), f"{po_path}: placeholders differ in {message.id!r}"


def test_every_catalog_records_its_review_status() -> None:
    status = tomllib.loads((PAGES_DIR / "locale" / "STATUS.toml").read_text(encoding="utf-8"))
    for po_path in catalogs():
        locale = po_path.parent.parent.name
        entry = status[locale]
        assert entry["status"] in {"source", "machine-drafted", "reviewed"}, locale
        if entry["status"] == "reviewed":
            assert entry["reviewed_by"], locale
        if entry["status"] == "machine-drafted":
            assert "NOT reviewed" in po_path.read_text(encoding="utf-8"), locale
