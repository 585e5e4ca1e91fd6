"""The warning page shown instead of search results, and the routes that go with it.

Privacy comes first here (DESIGN §6). Nothing a page is built from comes from the
query: the page is chosen by locale (``Accept-Language``), message variant (random per
request) and help services (by country and language), so the query cannot be reflected
into it. Every response carries ``Referrer-Policy: no-referrer`` (help services must not
learn the search from ``Referer``), ``Cache-Control: no-store``, a strict
Content-Security-Policy, ``nosniff`` and ``noindex``; none sets a cookie. The page loads
nothing: its stylesheet is inline and allowed by its hash, and it has no script at all.

Help links go through ``{prefix}/go/{service}?v={variant}``, which counts one click for
that service and variant (aggregate only) and redirects to the configured URL of that
service; anything else is a 404, so the route can never become an open redirect.

Everything is loaded once, at construction: templates (one Jinja environment per
locale, with that locale's catalog installed), catalogs, variants, help services and the
inline CSS with its hash. A page depends only on (locale, variant, services shown), so
per request it is usually a cache hit; a miss renders one template (~0.2 ms).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
import tomli
from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.lists import format_list
from babel.messages.mofile import read_mo
from markupsafe import Markup
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from deterrence.asgi import acknowledge_lifespan
from deterrence.headers import BASE_CSP, PLAIN_HEADERS, privacy_headers
from deterrence.services import HelpDirectory, HelpService, Selection, parse_accept_language
from deterrence.settings import Settings

if TYPE_CHECKING:
    from deterrence.matcher import Match

__all__ = [
    "PLAIN_HEADERS",
    "PageRecorder",
    "PagesError",
    "Variant",
    "WarningPages",
    "error_response",
    "load_variants",
    "prefers_json",
]

SOURCE_LOCALE = "en"
"""The language of the English texts in templates and ``variants.toml`` (the msgids)."""

AUDIENCES = ("self", "report", "others")
"""The guided sections of the page, in the order they are shown."""

SERVICES_PER_SECTION = 5
CACHE_SIZE = 256
OTHER = "other"
"""Label for a variant that is not configured (never a value taken from the request)."""

_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MAX_HEADER_CHARS = 1024
_VARIANT_KEYS = frozenset({"headline", "paragraphs", "enabled", "translations"})
_TEXT_KEYS = frozenset({"headline", "paragraphs"})


def N_(message: str) -> str:
    """Mark a message for extraction (``pybabel extract``); it is translated later."""
    return message


_KIND_NAMES = {
    "phone": N_("phone"),
    "chat": N_("chat"),
    "email": N_("email"),
    "self-help": N_("self-help online"),
    "report": N_("online report"),
}


class PagesError(ValueError):
    """The page assets (variants, catalogs, templates) are unusable; names the file."""


class PageRecorder(Protocol):
    """The part of :class:`deterrence.metrics.Recorder` the pages use."""

    def page_view(self, *, variant: str, locale: str) -> None: ...

    def help_click(self, *, service: str, variant: str) -> None: ...

    def error(self, kind: str) -> None: ...


# --- variants ---------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One message variant from ``variants.toml``; texts in English plus the
    variant's own translations, by locale and key."""

    id: str
    headline: str
    paragraphs: tuple[str, ...]
    enabled: bool = True
    translations: Mapping[str, Mapping[str, str | tuple[str, ...]]] = field(default_factory=dict)


def load_variants(path: Path) -> tuple[Variant, ...]:
    """Read a variants file; raise :class:`PagesError` naming the file on bad data."""
    try:
        data = tomli.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomli.TOMLDecodeError) as exc:
        raise PagesError(f"{path}: {exc}") from exc
    unknown = set(data) - {"variants"}
    if unknown:
        raise PagesError(f"{path}: unknown top-level keys {sorted(unknown)}")
    tables = data.get("variants")
    if not isinstance(tables, dict) or not tables:
        raise PagesError(f"{path}: no [variants.<id>] tables")
    variants = tuple(_parse_variant(path, vid, table) for vid, table in tables.items())
    if not any(v.enabled for v in variants):
        raise PagesError(f"{path}: every variant is disabled")
    return variants


def _parse_variant(path: Path, vid: str, table: object) -> Variant:
    where = f"{path}: variant {vid!r}"
    if not _ID.fullmatch(vid) or vid == OTHER:
        raise PagesError(f"{where}: ids use a-z, 0-9, '-' and '_' ({OTHER!r} is reserved)")
    if not isinstance(table, dict):
        raise PagesError(f"{where}: must be a table")
    unknown = set(table) - _VARIANT_KEYS
    if unknown:
        raise PagesError(f"{where}: unknown keys {sorted(unknown)}")
    texts = _parse_texts(where, table, required=True)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PagesError(f"{where}: enabled must be true or false")
    translations: dict[str, dict[str, str | tuple[str, ...]]] = {}
    raw = table.get("translations", {})
    if not isinstance(raw, dict):
        raise PagesError(f"{where}: translations must be a table of locales")
    for locale_id, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) - _TEXT_KEYS:
            raise PagesError(
                f"{where}: translations.{locale_id} may only set headline and paragraphs"
            )
        translations[locale_id] = _parse_texts(f"{where}, {locale_id}", entry, required=False)
    headline = texts["headline"]
    paragraphs = texts["paragraphs"]
    assert isinstance(headline, str) and isinstance(paragraphs, tuple)
    return Variant(vid, headline, paragraphs, enabled, translations)


def _parse_texts(
    where: str, table: Mapping[str, object], *, required: bool
) -> dict[str, str | tuple[str, ...]]:
    texts: dict[str, str | tuple[str, ...]] = {}
    headline = table.get("headline")
    if isinstance(headline, str) and headline.strip():
        texts["headline"] = headline.strip()
    elif headline is not None or required:
        raise PagesError(f"{where}: headline must be a non-empty string")
    paragraphs = table.get("paragraphs")
    if (
        isinstance(paragraphs, list)
        and paragraphs
        and all(isinstance(p, str) and p.strip() for p in paragraphs)
    ):
        texts["paragraphs"] = tuple(p.strip() for p in paragraphs)
    elif paragraphs is not None or required:
        raise PagesError(f"{where}: paragraphs must be a non-empty list of non-empty strings")
    return texts


def extract_variants(
    fileobj: BinaryIO,
    keywords: object,
    comment_tags: object,
    options: object,
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel extraction method for ``variants.toml`` (named in ``pages/babel.cfg``):
    the English texts become msgids, so the shipped variants are translated in the
    same catalogs as the rest of the page."""
    text = fileobj.read().decode("utf-8")
    lines = text.splitlines()
    for vid, table in tomli.loads(text).get("variants", {}).items():
        for key in ("headline", "paragraphs"):
            value = table.get(key)
            for message in [value] if isinstance(value, str) else value or ():
                yield _line_of(lines, message), None, message.strip(), [f"variant {vid}: {key}"]


def _line_of(lines: Sequence[str], message: str) -> int:
    start = message.strip()[:40]
    return next((n for n, line in enumerate(lines, 1) if start in line), 0)


# --- content negotiation ------------------------------------------------------


def prefers_json(accept: str | None) -> bool:
    """Whether ``Accept`` ranks ``application/json`` above ``text/html``.

    Each type takes the quality of its most specific matching range; on a tie the
    explicitly named type wins (``application/json, */*`` is a JSON client)."""
    best = {"text/html": (0.0, -1), "application/json": (0.0, -1)}
    for item in (accept or "")[:_MAX_HEADER_CHARS].split(","):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        quality = _quality(params)
        for name in best:
            kind = name.split("/")[0]
            specificity = {name: 2, f"{kind}/*": 1, "*/*": 0}.get(media)
            if specificity is not None and specificity > best[name][1]:
                best[name] = (quality, specificity)
    (json_q, json_s), (html_q, html_s) = best["application/json"], best["text/html"]
    return json_q > html_q or (json_q == html_q > 0 and json_s > html_s)


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0


# --- what a template sees -------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A text and, when it is not in the page's language, its own ``lang``/``dir``."""

    value: str
    lang: str | None = None
    dir: str | None = None


@dataclass(frozen=True)
class Message:
    headline: Text
    paragraphs: tuple[Text, ...]

    def plain(self) -> str:
        return " ".join([self.headline.value, *(p.value for p in self.paragraphs)])


@dataclass(frozen=True)
class ServiceView:
    """A help service as shown in one locale for one variant."""

    id: str
    name: str
    href: str | None
    phone: str | None
    tel: str | None
    kinds: str
    languages: str
    hours: str | None
    anonymous: bool
    audiences: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    id: str
    services: tuple[ServiceView, ...]


@dataclass(frozen=True)
class _LocaleBundle:
    id: str
    tag: str
    dir: str
    babel: Locale
    catalog: Mapping[str, str]
    page: jinja2.Template
    banner: jinja2.Template

    def gettext(self, message: str) -> str:
        return self.catalog.get(message) or message


# Pages for requests deterrence answers without the site: too long to inspect (413,
# 414), or the proxy's upstream failed (502, 504). Like the warning page they say
# nothing of the request, and carry PLAIN_HEADERS (DESIGN §6).
_ERROR_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} {title}</title>
<h1>{title}</h1>
<p>{text}</p>
"""
_ERROR_TEXTS = {
    413: ("Request too large", "This request is larger than the site accepts. Shorten it."),
    414: ("Search too long", "This search is longer than the site accepts. Shorten it."),
    502: ("Bad gateway", "The site cannot be reached right now. Try again later."),
    504: ("Gateway timeout", "The site took too long to answer. Try again later."),
}
ERROR_STATUSES = frozenset(_ERROR_TEXTS)


def error_response(status: int) -> Response:
    """The small page for a request deterrence answers itself with ``status``, one of
    :data:`ERROR_STATUSES`."""
    title, text = _ERROR_TEXTS[status]
    html = _ERROR_PAGE.format(status=status, title=title, text=text)
    return Response(html, status, PLAIN_HEADERS, "text/html")


def _page_csp(style_hash: str) -> str:
    # img-src data: only for the empty inline favicon, which stops the browser from
    # requesting /favicon.ico from the site.
    return f"{BASE_CSP}; style-src '{style_hash}'; img-src data:"


# --- the pages ----------------------------------------------------------------


class WarningPages:
    """Warning page, warning banner and the ``{prefix}`` routes that serve them.

    ``recorder`` may be set later (``pages.recorder = recorder``): the Recorder is
    built from :attr:`variants`, :attr:`locales` and :attr:`service_ids`.
    ``directory`` replaces the help directory loaded from settings (for tests and
    for operators who build one in code).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        recorder: PageRecorder | None = None,
        *,
        directory: HelpDirectory | None = None,
    ) -> None:
        self.settings = settings = settings or Settings()
        self.recorder = recorder
        self.prefix = settings.prefix.rstrip("/")
        pages_dir = settings.pages_dir

        if directory is None:
            directory = HelpDirectory.load(settings.resolved_help_services_path())
        self.directory = directory

        self._all_variants = load_variants(settings.resolved_variants_path())
        self.variants = tuple(v.id for v in self._all_variants if v.enabled)
        self._css = _read_css(pages_dir / "static" / "warning.css")
        digest = base64.b64encode(hashlib.sha256(self._css.encode()).digest()).decode()
        self.page_headers = privacy_headers(_page_csp(f"sha256-{digest}"))
        self._static = _read_static(pages_dir / "static")

        templates = _read_templates(pages_dir / "templates")
        self._bundles = _load_bundles(pages_dir, lambda catalog: _environment(templates, catalog))
        self.locales = tuple(sorted(self._bundles))
        if settings.default_locale not in self._bundles:
            raise PagesError(
                f"{pages_dir / 'locale'}: no catalog for default_locale "
                f"{settings.default_locale!r} (have {', '.join(self.locales)})"
            )
        self._locale_by_lower = {loc.lower(): loc for loc in self.locales}
        for variant in self._all_variants:
            missing = set(variant.translations) - set(self.locales)
            if missing:
                raise PagesError(
                    f"{settings.resolved_variants_path()}: variant {variant.id!r} has "
                    f"translations for {sorted(missing)} but pages have catalogs only for "
                    f"{', '.join(self.locales)}"
                )

        self._services: dict[str, HelpService] = dict(directory.services)
        self.service_ids = tuple(sorted(self._services))
        # Where /go/{service} may redirect: configured http(s) URLs and nothing else.
        self._redirects = {
            sid: s.url for sid, s in self._services.items() if s.url and _is_web_url(s.url)
        }
        self._messages = {
            (loc, v.id): _message(v, self._bundles[loc])
            for loc in self.locales
            for v in self._all_variants
        }
        self._views = {
            (loc, variant, sid): self._service_view(self._bundles[loc], variant, service)
            for loc in self.locales
            for variant in self.variants
            for sid, service in self._services.items()
        }
        self.app = _PagesApp(self)
        # Pages depend only on (locale, variant, services shown): a small cache makes
        # repeated blocks cost a dictionary lookup instead of a template render.
        self._page_cache = functools.lru_cache(maxsize=CACHE_SIZE)(self._render_uncached)
        self._banner_cache = functools.lru_cache(maxsize=CACHE_SIZE)(self._banner_uncached)
        # Served if rendering ever fails: the warning must still appear.
        default_selection = directory.select(None, settings.default_country)
        self._fallbacks = {
            v: self._render_page(self._bundles[settings.default_locale], v, default_selection)
            for v in self.variants
        }

    # -- public API ------------------------------------------------------------

    def choose_variant(self) -> str:
        """One enabled variant, uniformly at random; nothing about the choice is stored."""
        return secrets.choice(self.variants)

    def negotiate_locale(self, accept_language: str | None) -> str:
        preferred = [tag.replace("-", "_") for tag in parse_accept_language(accept_language)]
        chosen = negotiate_locale(preferred, list(self.locales), sep="_")
        return self._locale_by_lower.get((chosen or "").lower(), self.settings.default_locale)

    def block_response(
        self,
        headers: Headers,
        match: Match | None,
        variant: str,
        status: int,
        *,
        count_view: bool = True,
    ) -> Response:
        """The warning page (or JSON for clients that prefer it) for a blocked search.

        ``match`` is accepted for the callers' convenience and never shown: the page
        says nothing about what matched, let alone the query. ``count_view=False``
        serves the page without counting a view (HEAD requests)."""
        if variant not in self.variants:
            variant = self.variants[0]
        accept_language = headers.get("accept-language")
        bundle = self._bundles[self.negotiate_locale(accept_language)]
        try:
            selection = self.directory.select(accept_language, self.settings.default_country)
            if prefers_json(headers.get("accept")):
                body = self._json(bundle, variant, selection)
                response = Response(body, status, self._json_headers(bundle), "application/json")
            else:
                html = self._render_page(bundle, variant, selection)
                response = Response(html, status, self._html_headers(bundle), "text/html")
        except Exception:
            if self.recorder is not None:
                self.recorder.error("page_render")
            bundle = self._bundles[self.settings.default_locale]
            fallback = self._fallbacks[variant]
            response = Response(fallback, status, self._html_headers(bundle), "text/html")
        if count_view and self.recorder is not None:
            self.recorder.page_view(variant=variant, locale=bundle.id)
        return response

    def banner_html(self, headers: Headers, match: Match | None, variant: str) -> Markup:
        """A short warning with a help link, for results pages of the ``warn`` action.

        Plain HTML with ``deterrence-banner`` classes; the optional stylesheet is
        served at ``{prefix}/static/banner.css``."""
        if variant not in self.variants:
            variant = self.variants[0]
        accept_language = headers.get("accept-language")
        bundle = self._bundles[self.negotiate_locale(accept_language)]
        selection = self.directory.select(accept_language, self.settings.default_country)
        return self._banner_cache(bundle.id, variant, tuple(s.id for s in selection.services))

    def render_page(self, locale: str, variant: str, accept_language: str | None = None) -> str:
        """The warning page as HTML, for previews and tests (records nothing)."""
        selection = self.directory.select(accept_language, self.settings.default_country)
        return self._render_page(self._bundles[locale], variant, selection)

    # -- rendering -----------------------------------------------------------------

    def _render_page(self, bundle: _LocaleBundle, variant: str, selection: Selection) -> str:
        return self._page_cache(bundle.id, variant, tuple(s.id for s in selection.services))

    def _render_uncached(self, locale: str, variant: str, service_ids: tuple[str, ...]) -> str:
        bundle = self._bundles[locale]
        views = self._selected_views(locale, variant, service_ids)
        sections = [
            Section(
                audience, tuple(v for v in views if audience in v.audiences)[:SERVICES_PER_SECTION]
            )
            for audience in AUDIENCES
        ]
        return bundle.page.render(
            lang=bundle.tag,
            dir=bundle.dir,
            css=Markup(self._css),
            message=self._messages[locale, variant],
            primary=_primary(views),
            sections=sections,
        )

    def _banner_uncached(self, locale: str, variant: str, service_ids: tuple[str, ...]) -> Markup:
        bundle = self._bundles[locale]
        views = self._selected_views(locale, variant, service_ids)
        return Markup(
            bundle.banner.render(
                lang=bundle.tag,
                dir=bundle.dir,
                message=self._messages[locale, variant],
                primary=_primary(views),
                more_href=f"{self.prefix}/warning?v={quote(variant)}",
            )
        )

    def _selected_views(
        self, locale: str, variant: str, service_ids: Sequence[str]
    ) -> list[ServiceView]:
        return [
            self._views[locale, variant, sid]
            for sid in service_ids
            if (locale, variant, sid) in self._views
        ]

    def _json(self, bundle: _LocaleBundle, variant: str, selection: Selection) -> bytes:
        message = self._messages[bundle.id, variant]
        services = [
            {
                "id": service.id,
                "name": service.name,
                "url": service.url,
                "link": self._go_href(service.id, variant),
                "phone": service.phone,
                "kinds": list(service.kinds),
                "audiences": list(service.audiences),
                "languages": list(service.languages),
                "hours": service.hours,
                "anonymous": service.anonymous,
            }
            for service in selection.services
            if service.id in self._services
        ]
        document = {
            "blocked": True,
            "title": message.headline.value,
            "message": message.plain(),
            "locale": bundle.tag,
            "variant": variant,
            "services": services,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def _service_view(
        self, bundle: _LocaleBundle, variant: str, service: HelpService
    ) -> ServiceView:
        kinds = [bundle.gettext(_KIND_NAMES[k]) for k in service.kinds if k in _KIND_NAMES]
        languages = [bundle.babel.languages.get(code, code) for code in service.languages]
        return ServiceView(
            id=service.id,
            name=service.name,
            href=self._go_href(service.id, variant),
            phone=service.phone,
            tel=_tel(service.phone) if service.phone else None,
            kinds=_capitalize(format_list(kinds, locale=bundle.babel)) if kinds else "",
            languages=format_list(languages, locale=bundle.babel) if languages else "",
            hours=service.hours,
            anonymous=service.anonymous,
            audiences=tuple(service.audiences),
        )

    def _go_href(self, service_id: str, variant: str) -> str | None:
        if service_id not in self._redirects:
            return None
        return f"{self.prefix}/go/{quote(service_id)}?v={quote(variant)}"

    def _html_headers(self, bundle: _LocaleBundle) -> dict[str, str]:
        return {
            **self.page_headers,
            "Content-Language": bundle.tag,
            "Vary": "Accept, Accept-Language",
        }

    def _json_headers(self, bundle: _LocaleBundle) -> dict[str, str]:
        return {**PLAIN_HEADERS, "Content-Language": bundle.tag, "Vary": "Accept, Accept-Language"}


def _read_templates(folder: Path) -> dict[str, str]:
    try:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.html"))}
    except (OSError, UnicodeDecodeError) as exc:
        raise PagesError(f"{folder}: {exc}") from exc


def _environment(templates: Mapping[str, str], catalog: Mapping[str, str]) -> jinja2.Environment:
    """A Jinja environment with one locale's catalog installed (one per locale, so
    rendering needs no per-request gettext switching and stays thread-safe)."""
    env = jinja2.Environment(
        loader=jinja2.DictLoader(dict(templates)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True  # as `trimmed = true` in babel.cfg

    def gettext(message: str) -> str:
        return catalog.get(message) or message

    def ngettext(singular: str, plural: str, n: int) -> str:
        return gettext(singular if n == 1 else plural)

    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    return env


def _primary(views: Sequence[ServiceView]) -> ServiceView | None:
    return next((v for v in views if "self" in v.audiences), None)


def _message(variant: Variant, bundle: _LocaleBundle) -> Message:
    """The variant's texts in one locale: its own translation, else the catalog's,
    else the English text marked as English."""
    own = variant.translations.get(bundle.id, {})

    def translated(english: str) -> Text:
        if bundle.id == SOURCE_LOCALE or english in bundle.catalog:
            return Text(bundle.gettext(english))
        return Text(english, SOURCE_LOCALE, "ltr")

    headline, paragraphs = own.get("headline"), own.get("paragraphs")
    return Message(
        Text(headline) if isinstance(headline, str) else translated(variant.headline),
        tuple(Text(p) for p in paragraphs)
        if isinstance(paragraphs, tuple)
        else tuple(translated(p) for p in variant.paragraphs),
    )


def _tel(phone: str) -> str:
    """``tel:`` target: the digits before any comment such as "(1.888.PREVENT)"."""
    number = phone.split("(")[0]
    digits = re.sub(r"\D", "", number)
    return ("+" if number.strip().startswith("+") else "") + digits


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _read_css(path: Path) -> str:
    try:
        css = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PagesError(f"{path}: {exc}") from exc
    if "</" in css:
        raise PagesError(f"{path}: must not contain '</' (it is inlined into <style>)")
    return css


def _read_static(folder: Path) -> dict[str, bytes]:
    """Stylesheets served under ``{prefix}/static/``: read once, served from memory."""
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.css"))}


def _load_bundles(
    pages_dir: Path, make_env: Callable[[Mapping[str, str]], jinja2.Environment]
) -> dict[str, _LocaleBundle]:
    bundles: dict[str, _LocaleBundle] = {}
    locale_dir = pages_dir / "locale"
    for mo_path in sorted(locale_dir.glob("*/LC_MESSAGES/messages.mo")):
        locale_id = mo_path.parent.parent.name
        try:
            babel_locale = Locale.parse(locale_id)
            with mo_path.open("rb") as fp:
                mo = read_mo(fp)
        except (OSError, ValueError, UnknownLocaleError) as exc:
            raise PagesError(f"{mo_path}: {exc}") from exc
        catalog = {
            m.id: m.string
            for m in mo
            if m.id and isinstance(m.id, str) and isinstance(m.string, str) and m.string
        }
        env = make_env(catalog)
        try:
            page, banner = env.get_template("warning.html"), env.get_template("banner.html")
        except jinja2.TemplateError as exc:
            raise PagesError(f"{pages_dir / 'templates'}: {exc}") from exc
        bundles[locale_id] = _LocaleBundle(
            id=locale_id,
            tag=locale_id.replace("_", "-"),
            dir=babel_locale.text_direction,
            babel=babel_locale,
            catalog=catalog,
            page=page,
            banner=banner,
        )
    if not bundles:
        raise PagesError(f"{locale_dir}: no */LC_MESSAGES/messages.mo catalogs")
    return bundles


# --- the ASGI app -------------------------------------------------------------------


class _PagesApp:
    """Serves ``{prefix}/warning``, ``{prefix}/go/{service}`` and ``{prefix}/static/*``.

    Works both when called with full paths (``/_deterrence/go/x``) and when mounted at
    the prefix (``Mount("/_deterrence", pages.app)``, where ``root_path`` holds it)."""

    def __init__(self, pages: WarningPages) -> None:
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        response = self.respond(scope)
        await response(scope, receive, send)

    def respond(self, scope: Scope) -> Response:
        path = self._route_path(scope)
        if path is None:
            return _plain(404, "Not found")
        if scope["method"] not in ("GET", "HEAD"):
            return _plain(405, "Method not allowed", {"Allow": "GET, HEAD"})
        query = _query(scope)
        pages = self.pages
        if path == "/warning":
            variant = query.get("v", "")
            if variant not in pages.variants:
                variant = pages.choose_variant()
            return pages.block_response(
                Headers(scope=scope),
                None,
                variant,
                pages.settings.block_status,
                count_view=scope["method"] == "GET",
            )
        if path.startswith("/go/"):
            return self._go(path[len("/go/") :], query.get("v", ""), scope["method"] == "GET")
        if path.startswith("/static/"):
            body = pages._static.get(path[len("/static/") :])
            if body is not None:
                return Response(body, 200, PLAIN_HEADERS, "text/css; charset=utf-8")
        return _plain(404, "Not found")

    def _go(self, service_id: str, variant: str, count: bool) -> Response:
        pages = self.pages
        url = pages._redirects.get(service_id)
        if url is None:
            return _plain(404, "Not found")
        if count and pages.recorder is not None:
            pages.recorder.help_click(
                service=service_id, variant=variant if variant in pages.variants else OTHER
            )
        return Response(None, 303, {**PLAIN_HEADERS, "Location": url})

    def _route_path(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        prefix = self.pages.prefix
        if prefix and path.startswith(prefix + "/"):
            return path[len(prefix) :]
        if not prefix or root.endswith(prefix):
            return path
        return None


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"")[:_MAX_HEADER_CHARS].decode("latin-1")
    return dict(parse_qsl(raw))


def _plain(status: int, text: str, extra: Mapping[str, str] | None = None) -> Response:
    return Response(text, status, {**PLAIN_HEADERS, **(extra or {})}, "text/plain")


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
