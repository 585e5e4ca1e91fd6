"""The directory of help services and reporting hotlines shown on the warning page.

The directory is a TOML file (``pages/help_services.toml``) with one ``[[service]]``
table per service. Every phone number and address in it is meant to be checked by a
person against a named source; this module refuses anything it cannot trust the
shape of, so a typo fails loudly in ``deterrence pages check`` rather than quietly
sending someone to the wrong number.

Choosing services for a visitor uses only the ``Accept-Language`` header and the
operator's configured default country: no IP geolocation, nothing stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import tomli
from babel import Locale

__all__ = [
    "AUDIENCES",
    "INTERNATIONAL",
    "KINDS",
    "HelpDirectory",
    "HelpService",
    "Selection",
    "ServicesError",
    "parse_accept_language",
]

INTERNATIONAL = "INT"
KINDS = frozenset({"phone", "chat", "email", "self-help", "report"})
AUDIENCES = frozenset({"self", "others", "report"})
FALLBACK_LANGUAGE = "en"

_REQUIRED = (
    "id",
    "name",
    "countries",
    "kinds",
    "audiences",
    "url",
    "languages",
    "anonymous",
    "source",
    "verified",
)
_OPTIONAL = ("phone", "hours")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]*[0-9]")
_SERVICE_HEADER = re.compile(r"^\s*\[\[\s*service\s*\]\]")
# CLDR territory codes that are not countries (EU, UN, "unknown", pseudo-locales).
_NOT_COUNTRIES = frozenset({"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"})
_COUNTRIES = frozenset(
    code
    for code in map(str, Locale("en").territories)
    if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
)
_COUNTRY_HINTS = {"UK": "GB"}

# Accept-Language comes from the client: bound the work spent on it.
_MAX_HEADER_CHARS = 4096
_MAX_LANGUAGE_RANGES = 32
_LANGUAGE_RANGE = re.compile(r"(?:[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)")
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


class ServicesError(ValueError):
    """The help-services file is missing or invalid; the message names the file
    and, where it can, the line and the entry."""


@dataclass(frozen=True, slots=True)
class HelpService:
    id: str
    name: str
    countries: tuple[str, ...]
    """ISO 3166-1 alpha-2 codes; ``"INT"`` marks a service meant for everyone."""
    kinds: tuple[str, ...]
    """Ways to reach the service: a subset of ``KINDS``."""
    audiences: tuple[str, ...]
    """Who it is for: a subset of ``AUDIENCES``."""
    url: str
    phone: str | None
    languages: tuple[str, ...]
    """BCP 47 language tags the service works in."""
    hours: str | None
    anonymous: bool
    source: str
    """Where a maintainer confirmed the details."""
    verified: date
    """When they confirmed them."""

    @property
    def international(self) -> bool:
        return INTERNATIONAL in self.countries

    def speaks(self, language: str) -> bool:
        """Whether the service works in ``language`` (a primary subtag such as ``"de"``)."""
        return any(_primary(tag) == language for tag in self.languages)


@dataclass(frozen=True, slots=True)
class Selection:
    country: str | None
    """The first of the visitor's candidate countries that has services, if any."""
    language: str
    """Primary language subtag to present the services in."""
    services: tuple[HelpService, ...]


class HelpDirectory:
    """An immutable, validated set of help services."""

    def __init__(self, services: Iterable[HelpService], *, path: Path | None = None) -> None:
        by_id: dict[str, HelpService] = {}
        for service in services:
            if service.id in by_id:
                raise ServicesError(f"{path or '<memory>'}: duplicate service id {service.id!r}")
            by_id[service.id] = service
        self.path = path
        self.services: Mapping[str, HelpService] = MappingProxyType(by_id)
        self._languages = frozenset(_primary(tag) for s in by_id.values() for tag in s.languages)

    @classmethod
    def load(cls, path: str | Path) -> HelpDirectory:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServicesError(f"{path}: cannot read help services: {exc}") from exc
        try:
            data = tomli.loads(text)
        except tomli.TOMLDecodeError as exc:
            raise ServicesError(f"{path}: invalid TOML: {exc}") from exc

        unknown = sorted(set(data) - {"service"})
        if unknown:
            raise ServicesError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
        entries = data.get("service")
        if not isinstance(entries, list) or not entries:
            raise ServicesError(f"{path}: expected at least one [[service]] table")

        header_lines = [
            number
            for number, line in enumerate(text.splitlines(), start=1)
            if _SERVICE_HEADER.match(line)
        ]
        services = []
        seen: dict[str, str] = {}
        for index, entry in enumerate(entries):
            line = header_lines[index] if index < len(header_lines) else None
            where = f"{path}:{line}" if line else f"{path}"
            label = f"service #{index + 1}"
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                label += f" ({entry['id']!r})"
            try:
                service = _parse_service(entry)
            except ValueError as exc:
                raise ServicesError(f"{where}: {label}: {exc}") from None
            if service.id in seen:
                raise ServicesError(
                    f"{where}: {label}: duplicate id, already used at {seen[service.id]}"
                )
            seen[service.id] = where
            services.append(service)
        return cls(services, path=path)

    def select(self, accept_language: str | None, default_country: str | None) -> Selection:
        """Services for a visitor, most relevant first.

        Countries come from the regions in ``Accept-Language`` (in q order, e.g.
        ``de-AT`` gives AT), then ``default_country``; their services come first,
        then international ones. Within each country, services working in the
        visitor's language come first; otherwise the file order is kept.
        """
        ranges = parse_accept_language(accept_language)
        language = next(
            (
                primary
                for primary in (_primary(tag) for tag in ranges)
                if primary in self._languages
            ),
            FALLBACK_LANGUAGE,
        )

        countries: list[str] = []
        for tag in ranges:
            region = _region(tag)
            if region and region not in countries:
                countries.append(region)
        default = (default_country or "").strip().upper()
        if default in _COUNTRIES and default not in countries:
            countries.append(default)

        chosen: dict[str, HelpService] = {}
        first_country: str | None = None
        for country in [*countries, INTERNATIONAL]:
            group = [s for s in self.services.values() if country in s.countries]
            if group and first_country is None and country != INTERNATIONAL:
                first_country = country
            group.sort(key=lambda s: not s.speaks(language))  # stable: file order otherwise
            for service in group:
                chosen.setdefault(service.id, service)
        return Selection(country=first_country, language=language, services=tuple(chosen.values()))

    def stale(self, today: date, max_age_days: int = 365) -> tuple[HelpService, ...]:
        """Services last verified more than ``max_age_days`` before ``today``."""
        cutoff = today - timedelta(days=max_age_days)
        return tuple(s for s in self.services.values() if s.verified < cutoff)


def parse_accept_language(header: str | None) -> tuple[str, ...]:
    """Language ranges from an ``Accept-Language`` header, best first.

    Never raises: malformed ranges and q values are skipped, ``q=0`` ranges are
    dropped, equal q values keep their order, and ``*`` is dropped because it
    names no language or region.
    """
    if not header or not isinstance(header, str):
        return ()
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header[:_MAX_HEADER_CHARS].split(",")):
        if position >= _MAX_LANGUAGE_RANGES:
            break
        tag, *params = (part.strip() for part in item.split(";"))
        if not _LANGUAGE_RANGE.fullmatch(tag) or tag == "*":
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                quality = float(value) if _QVALUE.fullmatch(value) else -1.0
        if quality > 0:
            weighted.append((-quality, position, tag))
    weighted.sort()
    return tuple(tag for _, _, tag in weighted)


def _primary(tag: str) -> str:
    return tag.split("-", 1)[0].lower()


def _region(tag: str) -> str | None:
    """The ISO 3166-1 region of a language tag (``zh-Hant-TW`` gives TW), if any."""
    for subtag in tag.split("-")[1:]:
        if len(subtag) == 1:  # extension or private use: no region after this
            return None
        if len(subtag) == 2 and subtag.isalpha():
            region = subtag.upper()
            return region if region in _COUNTRIES else None
    return None


def _parse_service(entry: object) -> HelpService:
    if not isinstance(entry, dict):
        raise ValueError("must be a table")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")

    service_id = _text(entry, "id")
    if not _ID.fullmatch(service_id):
        raise ValueError(f"id {service_id!r} must match [a-z0-9][a-z0-9-]*")
    countries = _string_list(entry, "countries", allow_empty=False)
    for country in countries:
        if country != INTERNATIONAL and country not in _COUNTRIES:
            hint = (
                f" (did you mean {_COUNTRY_HINTS[country]!r}?)" if country in _COUNTRY_HINTS else ""
            )
            raise ValueError(
                f"countries: {country!r} is not an ISO 3166-1 alpha-2 code or 'INT'{hint}"
            )
    kinds = _string_list(entry, "kinds", allow_empty=True)
    _check_vocabulary("kinds", kinds, KINDS)
    audiences = _string_list(entry, "audiences", allow_empty=False)
    _check_vocabulary("audiences", audiences, AUDIENCES)
    languages = _string_list(entry, "languages", allow_empty=False)
    for tag in languages:
        if not _LANGUAGE_TAG.fullmatch(tag):
            raise ValueError(
                f"languages: {tag!r} is not a BCP 47 language tag like 'en' or 'nl-BE'"
            )

    phone = _optional_text(entry, "phone")
    if phone is not None and not (_PHONE.fullmatch(phone) and sum(c.isdigit() for c in phone) >= 3):
        raise ValueError(
            f"phone {phone!r} may contain only digits, spaces, '+', '-', '.', '(' and ')'"
        )
    if phone is not None and "phone" not in kinds:
        raise ValueError("has a phone number but 'phone' is not in kinds")
    anonymous = entry["anonymous"]
    if not isinstance(anonymous, bool):
        raise ValueError("anonymous must be true or false")

    return HelpService(
        id=service_id,
        name=_text(entry, "name"),
        countries=countries,
        kinds=kinds,
        audiences=audiences,
        url=_url(entry, "url", schemes=("https",)),
        phone=phone,
        languages=languages,
        hours=_optional_text(entry, "hours"),
        anonymous=anonymous,
        source=_url(entry, "source", schemes=("https", "http")),
        verified=_date(entry, "verified"),
    )


def _text(entry: dict[str, Any], key: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string")
    return value.strip()


def _optional_text(entry: dict[str, Any], key: str) -> str | None:
    return _text(entry, key) if key in entry else None


def _string_list(entry: dict[str, Any], key: str, *, allow_empty: bool) -> tuple[str, ...]:
    value = entry[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key} must be a list of strings")
    if not value and not allow_empty:
        raise ValueError(f"{key} must not be empty")
    duplicates = sorted({item for item in value if value.count(item) > 1})
    if duplicates:
        raise ValueError(f"{key}: duplicate value(s) {', '.join(map(repr, duplicates))}")
    return tuple(value)


def _check_vocabulary(key: str, values: tuple[str, ...], allowed: frozenset[str]) -> None:
    bad = [value for value in values if value not in allowed]
    if bad:
        raise ValueError(
            f"{key}: unknown value(s) {', '.join(map(repr, bad))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _url(entry: dict[str, Any], key: str, *, schemes: tuple[str, ...]) -> str:
    value = _text(entry, key)
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError(f"{key} {value!r} must be an absolute {' or '.join(schemes)} URL")
    return value


def _date(entry: dict[str, Any], key: str) -> date:
    value = entry[key]
    # TOML datetimes are also dates in Python; only a plain date is meant here.
    if isinstance(value, date) and type(value) is date:
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{key} must be a date like 2026-11-22, got {value!r}")
