"""Help directory: strict loading, selection by Accept-Language, staleness, the
shipped directory, and ``deterrence pages check`` run as a user would run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deterrence.resources import PAGES_DIR
from deterrence.services import (
    HelpDirectory,
    HelpService,
    ServicesError,
    parse_accept_language,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = PAGES_DIR / "help_services.toml"


class Raw(str):
    """A value written into the TOML file verbatim."""


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str | list):
        return json.dumps(value, ensure_ascii=False)  # JSON strings and arrays are valid TOML
    raise TypeError(value)


def entry(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "zorblax-line",
        "name": "Zorblax helpline",
        "countries": ["GB"],
        "kinds": ["phone", "chat"],
        "audiences": ["self", "others"],
        "url": "https://zorblax.example/help",
        "phone": "0800 000 000",
        "languages": ["en"],
        "anonymous": True,
        "source": "https://zorblax.example/about",
        "verified": date(2026, 11, 1),
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not None}


def write_services(path: Path, *entries: dict[str, Any], preamble: str = "") -> Path:
    blocks = [preamble] if preamble else []
    for fields in entries:
        lines = ["[[service]]", *(f"{key} = {toml_value(v)}" for key, v in fields.items())]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def load(tmp_path: Path, *entries: dict[str, Any]) -> HelpDirectory:
    return HelpDirectory.load(write_services(tmp_path / "help_services.toml", *entries))


# --- loading -------------------------------------------------------------------


def test_valid_file_loads_into_frozen_services(tmp_path: Path) -> None:
    directory = load(
        tmp_path, entry(hours="Mon-Fri 09:00-17:00"), entry(id="quendrific", phone=None)
    )
    service = directory.services["zorblax-line"]
    assert service == HelpService(
        id="zorblax-line",
        name="Zorblax helpline",
        countries=("GB",),
        kinds=("phone", "chat"),
        audiences=("self", "others"),
        url="https://zorblax.example/help",
        phone="0800 000 000",
        languages=("en",),
        hours="Mon-Fri 09:00-17:00",
        anonymous=True,
        source="https://zorblax.example/about",
        verified=date(2026, 11, 1),
    )
    assert directory.services["quendrific"].phone is None
    assert list(directory.services) == ["zorblax-line", "quendrific"]  # file order kept
    with pytest.raises(AttributeError):
        service.phone = "112"  # type: ignore[misc]
    with pytest.raises(TypeError):
        directory.services["other"] = service  # type: ignore[index]


def test_verified_may_be_quoted_iso_date(tmp_path: Path) -> None:
    directory = load(tmp_path, entry(verified="2026-11-01"))
    assert directory.services["zorblax-line"].verified == date(2026, 11, 1)


BROKEN_ENTRIES = [
    pytest.param({"colour": "blue"}, "unknown key(s) colour", id="unknown-key"),
    pytest.param({"kinds": ["phone", "fax"]}, "kinds: unknown value(s) 'fax'", id="bad-kind"),
    pytest.param({"kinds": "phone"}, "kinds must be a list of strings", id="kinds-not-list"),
    pytest.param({"kinds": ["chat", "chat"]}, "kinds: duplicate value(s) 'chat'", id="dup-kind"),
    pytest.param(
        {"audiences": ["self", "curious"]},
        "audiences: unknown value(s) 'curious'",
        id="bad-audience",
    ),
    pytest.param({"audiences": []}, "audiences must not be empty", id="no-audience"),
    pytest.param({"verified": "2026-13-01"}, "verified must be a date", id="bad-date"),
    pytest.param({"verified": "22.11.2026"}, "verified must be a date", id="bad-date-format"),
    pytest.param(
        {"verified": Raw("2026-11-22T10:00:00")}, "verified must be a date", id="datetime-not-date"
    ),
    pytest.param({"source": None}, "missing required key(s) source", id="missing-source"),
    pytest.param(
        {"id": None, "url": None}, "missing required key(s) id, url", id="missing-id-and-url"
    ),
    pytest.param({"id": "Zorblax Line"}, "id 'Zorblax Line' must match", id="bad-id"),
    pytest.param({"countries": ["UK"]}, "(did you mean 'GB'?)", id="uk-is-not-iso"),
    pytest.param({"countries": ["Narnia"]}, "'Narnia' is not an ISO 3166-1", id="bad-country"),
    pytest.param({"countries": []}, "countries must not be empty", id="no-country"),
    pytest.param({"languages": ["English"]}, "'English' is not a BCP 47", id="bad-language"),
    pytest.param({"phone": "call us"}, "phone 'call us' may contain only", id="bad-phone"),
    pytest.param(
        {"kinds": ["chat"]}, "has a phone number but 'phone' is not in kinds", id="phone-kind"
    ),
    pytest.param({"url": "http://zorblax.example/"}, "must be an absolute https URL", id="http"),
    pytest.param({"url": "zorblax.example"}, "must be an absolute https URL", id="relative-url"),
    pytest.param({"source": "see their website"}, "source 'see their website'", id="bad-source"),
    pytest.param({"anonymous": "yes"}, "anonymous must be true or false", id="anonymous-str"),
    pytest.param({"name": "  "}, "name must be a non-empty string", id="blank-name"),
    pytest.param({"hours": Raw("9")}, "hours must be a non-empty string", id="hours-number"),
]


@pytest.mark.parametrize(("override", "message"), BROKEN_ENTRIES)
def test_broken_entry_names_file_line_and_entry(
    tmp_path: Path, override: dict[str, Any], message: str
) -> None:
    good = entry(id="mirveltok")
    broken = entry(**override)
    path = write_services(tmp_path / "svc.toml", good, broken)
    with pytest.raises(ServicesError) as caught:
        HelpDirectory.load(path)
    text = str(caught.value)
    header_line = path.read_text().splitlines().index("[[service]]", 1) + 1
    assert text.startswith(f"{path}:{header_line}: service #2")
    assert message in text
    if isinstance(broken.get("id"), str):
        assert repr(broken["id"]) in text


def test_duplicate_id_names_both_places(tmp_path: Path) -> None:
    path = write_services(tmp_path / "svc.toml", entry(), entry(name="Another"))
    with pytest.raises(ServicesError, match=r"svc\.toml:\d+: service #2 \('zorblax-line'\): "):
        HelpDirectory.load(path)
    with pytest.raises(ServicesError, match=r"duplicate id, already used at .*svc\.toml:1"):
        HelpDirectory.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("", "expected at least one [[service]] table", id="empty"),
        pytest.param('title = "x"\n', "unknown top-level key(s) title", id="top-level-key"),
        pytest.param("[[service]\nid = 1\n", "invalid TOML", id="syntax"),
        pytest.param("service = 3\n", "expected at least one [[service]] table", id="not-tables"),
    ],
)
def test_broken_file_is_an_error_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ServicesError, match=r"broken\.toml") as caught:
        HelpDirectory.load(path)
    assert message in str(caught.value)


def test_syntax_error_reports_the_parser_line(tmp_path: Path) -> None:
    path = write_services(tmp_path / "svc.toml", entry())
    path.write_text(path.read_text() + "\n[[service]]\nid = zorblax\n", encoding="utf-8")
    with pytest.raises(ServicesError, match=r"invalid TOML: .*line 15"):
        HelpDirectory.load(path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ServicesError, match=r"nothere\.toml: cannot read"):
        HelpDirectory.load(tmp_path / "nothere.toml")


# --- Accept-Language -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-GB,en;q=0.8", ("en-GB", "en")),
        ("fr-BE;q=0.5, nl-NL;q=0.9, de", ("de", "nl-NL", "fr-BE")),
        ("da, en-gb;q=0.8, en;q=0.7", ("da", "en-gb", "en")),
        ("fi;q=0.5, sv;q=0.5", ("fi", "sv")),  # equal q keeps header order
        ("*;q=0.9, es-ES;q=0.1", ("es-ES",)),  # '*' names no language or region
        ("fr-FR;q=0, de-DE", ("de-DE",)),  # q=0 means "not acceptable"
        ("en-GB;q=1.5, en-US;q=abc, nl", ("nl",)),  # bad q values drop the range
        ("en-GB ; Q=0.3 , de-AT", ("de-AT", "en-GB")),
        ("", ()),
        (None, ()),
        (";;;,,,", ()),
        ("q=1", ()),
        ("en_GB, 12-34, -en, en-", ()),
        ("\x00\uffff, ☃-GB", ()),
    ],
)
def test_parse_accept_language(header: str | None, expected: tuple[str, ...]) -> None:
    assert parse_accept_language(header) == expected


def test_parse_accept_language_bounds_work_on_huge_headers() -> None:
    header = ",".join(["xx-XX;q=0.1"] * 10_000) + ",en-GB"
    ranges = parse_accept_language(header)
    assert len(ranges) <= 32
    assert "en-GB" not in ranges  # beyond the bound: ignored rather than parsed


# --- selection -------------------------------------------------------------------


@pytest.fixture
def directory(tmp_path: Path) -> HelpDirectory:
    return load(
        tmp_path,
        entry(id="gb-line", countries=["GB"]),
        entry(id="gb-ie-hotline", countries=["GB", "IE"], kinds=["report"], phone=None,
              audiences=["report"]),
        entry(id="de-hotline", countries=["DE"], languages=["de"], kinds=["report"], phone=None,
              audiences=["report"]),
        entry(id="de-en-line", countries=["DE"], languages=["en"]),
        entry(id="de-line", countries=["DE"], languages=["de"]),
        entry(id="at-line", countries=["AT"], languages=["de-AT"]),
        entry(id="fi-int-program", countries=["FI", "INT"], languages=["fi", "en"],
              kinds=["self-help"], phone=None),
        entry(id="int-en", countries=["INT"], languages=["en"], kinds=["self-help"], phone=None),
        entry(id="int-de", countries=["INT"], languages=["de", "en"], kinds=["self-help"],
              phone=None),
        entry(id="nl-line", countries=["NL"], languages=["nl"]),
    )  # fmt: skip


def ids(selection: Any) -> list[str]:
    return [service.id for service in selection.services]


def test_region_from_accept_language_comes_first(directory: HelpDirectory) -> None:
    selection = directory.select("en-GB,en;q=0.8", None)
    assert selection.country == "GB"
    assert selection.language == "en"
    assert ids(selection) == ["gb-line", "gb-ie-hotline", "fi-int-program", "int-en", "int-de"]


def test_countries_in_q_order_then_default_then_international(directory: HelpDirectory) -> None:
    selection = directory.select("de-AT;q=0.5, nl-NL;q=0.9", "GB")
    assert selection.country == "NL"
    assert selection.language == "nl"
    assert ids(selection) == [
        "nl-line",
        "at-line",
        "gb-line",
        "gb-ie-hotline",
        "fi-int-program",
        "int-en",
        "int-de",
    ]


def test_visitor_language_first_within_each_group(directory: HelpDirectory) -> None:
    selection = directory.select("de-DE, en;q=0.5", None)
    assert selection.country == "DE"
    assert selection.language == "de"
    # DE group: German speakers first, file order otherwise; then INT likewise.
    assert ids(selection) == [
        "de-hotline",
        "de-line",
        "de-en-line",
        "int-de",
        "fi-int-program",
        "int-en",
    ]


def test_region_without_services_falls_through_to_default(directory: HelpDirectory) -> None:
    selection = directory.select("de-CH", "Deutschland")  # bad default country is ignored
    assert selection.country is None
    assert selection.language == "de"
    assert ids(selection) == ["int-de", "fi-int-program", "int-en"]
    assert directory.select("de-CH", "at").country == "AT"  # default is case-insensitive


def test_service_listed_once_across_countries_and_international(directory: HelpDirectory) -> None:
    selection = directory.select("en-IE, en-GB, fi-FI", None)
    assert selection.country == "IE"
    assert ids(selection) == ["gb-ie-hotline", "gb-line", "fi-int-program", "int-en", "int-de"]


def test_language_falls_back_to_english(directory: HelpDirectory) -> None:
    selection = directory.select("ja-JP, ko;q=0.5", "NL")
    assert selection.language == "en"
    assert selection.country == "NL"
    assert ids(selection)[0] == "nl-line"


def test_best_language_we_have_services_in(directory: HelpDirectory) -> None:
    assert directory.select("ja, fi;q=0.4, de;q=0.3", None).language == "fi"
    assert directory.select("de-CH", None).language == "de"  # primary subtag of de-AT entries


@pytest.mark.parametrize(
    "header",
    [None, "", "*", ";q=1", "en-GB;q=nope", "x" * 100_000, "\x00\x01", "🙂-GB", ",,,,", "en-GB;q"],
)
def test_malformed_headers_fall_back_to_default_country(
    directory: HelpDirectory, header: str | None
) -> None:
    selection = directory.select(header, "DE")
    assert selection.country == "DE"
    assert selection.language == "en"
    assert ids(selection) == [
        "de-en-line",
        "de-hotline",
        "de-line",
        "fi-int-program",
        "int-en",
        "int-de",
    ]


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=300), default=st.one_of(st.none(), st.text(max_size=4)))
def test_select_never_raises(header: str, default: str | None) -> None:
    directory = HelpDirectory(
        [
            HelpService(
                id="int-en",
                name="International",
                countries=("INT",),
                kinds=("self-help",),
                audiences=("self",),
                url="https://zorblax.example/",
                phone=None,
                languages=("en",),
                hours=None,
                anonymous=True,
                source="https://zorblax.example/",
                verified=date(2026, 11, 22),
            )
        ]
    )
    selection = directory.select(header, default)
    assert [s.id for s in selection.services] == ["int-en"]
    assert selection.language == "en"


# --- staleness -------------------------------------------------------------------


def test_stale_lists_entries_older_than_max_age(tmp_path: Path) -> None:
    directory = load(
        tmp_path,
        entry(id="fresh", verified=date(2026, 11, 22)),
        entry(id="one-year", verified=date(2025, 11, 22)),
        entry(id="year-and-a-day", verified=date(2025, 11, 21)),
        entry(id="ancient", verified=date(2019, 1, 1)),
    )
    today = date(2026, 11, 22)
    assert [s.id for s in directory.stale(today)] == ["year-and-a-day", "ancient"]
    assert [s.id for s in directory.stale(today, max_age_days=30)] == [
        "one-year",
        "year-and-a-day",
        "ancient",
    ]
    assert directory.stale(date(2019, 1, 1)) == ()


# --- the shipped directory -------------------------------------------------------

REQUIRED_COUNTRIES = ["GB", "IE", "US", "NL", "BE", "DE", "AU", "CA", "SE", "FI"]
REQUIRED_HOTLINES = ["iwf", "ncmec-cybertipline", "cybertip-ca", "esafety", "inhope"]


@pytest.fixture(scope="module")
def shipped() -> HelpDirectory:
    return HelpDirectory.load(SHIPPED)


def test_shipped_file_covers_required_countries(shipped: HelpDirectory) -> None:
    covered = {country for s in shipped.services.values() for country in s.countries}
    assert set(REQUIRED_COUNTRIES) | {"INT"} <= covered
    for country in REQUIRED_COUNTRIES:
        services = [s for s in shipped.services.values() if country in s.countries]
        assert any("report" in s.audiences for s in services), f"no reporting hotline for {country}"
        selection = shipped.select(f"en-{country}", None)
        assert selection.country == country
        assert country in selection.services[0].countries


def test_shipped_file_has_international_help_and_named_hotlines(shipped: HelpDirectory) -> None:
    for service_id in REQUIRED_HOTLINES:
        assert "report" in shipped.services[service_id].audiences
    international = [s for s in shipped.services.values() if s.international]
    assert any("self" in s.audiences for s in international)
    assert any("report" in s.audiences for s in international)
    assert {"troubled-desire", "redirection"} <= set(shipped.services)


def test_shipped_entries_are_verified_and_sourced(shipped: HelpDirectory) -> None:
    assert shipped.stale(date(2026, 11, 22)) == ()
    for service in shipped.services.values():
        assert service.verified <= date(2026, 11, 22)
        assert service.source.startswith(("https://", "http://"))
        assert service.url.startswith("https://")


def test_every_shipped_entry_has_a_verification_comment() -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    headers = [i for i, line in enumerate(lines) if line.strip() == "[[service]]"]
    assert headers
    for index in headers:
        assert lines[index - 1].startswith("#"), f"no comment above line {index + 1}"


# --- deterrence pages check -------------------------------------------------------


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deterrence", "pages", "check", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pages_check_passes_on_shipped_file() -> None:
    result = run_check("--today", "2026-11-22")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert re.fullmatch(
        rf"{re.escape(str(SHIPPED))}: \d+ services, 0 warning\(s\)", result.stdout.splitlines()[0]
    )
    summary = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()[1:]}
    assert set(REQUIRED_COUNTRIES) | {"INT"} <= set(summary)
    assert result.stdout.splitlines()[-1].split()[0] == "INT"  # international listed last


def test_pages_check_warns_on_stale_entries_and_fails_only_when_strict() -> None:
    result = run_check("--today", "2028-01-01")
    assert result.returncode == 0
    assert "warning:" in result.stderr
    assert "stop-it-now-uk: last verified 2026-11-22 (405 days ago)" in result.stderr
    assert run_check("--today", "2028-01-01", "--strict").returncode == 1
    assert run_check("--today", "2026-12-01", "--strict").returncode == 0


def test_pages_check_warns_about_dates_in_the_future(tmp_path: Path) -> None:
    path = write_services(tmp_path / "svc.toml", entry(verified=date(2030, 1, 1)))
    result = run_check(str(path), "--today", "2026-11-22", "--strict")
    assert result.returncode == 1
    assert "zorblax-line: verified date 2030-01-01 is after 2026-11-22" in result.stderr


def test_pages_check_fails_with_a_clear_error_on_invalid_data(tmp_path: Path) -> None:
    path = write_services(tmp_path / "svc.toml", entry(kinds=["phone", "fax"]))
    result = run_check(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}:1: service #1 ('zorblax-line'): kinds:")
    assert "'fax'" in result.stderr


def test_pages_check_rejects_a_bad_today() -> None:
    result = run_check("--today", "22/11/2026")
    assert result.returncode == 2
    assert "expected a date like 2026-11-22" in result.stderr
