"""Properties of request decoding (deterrence.extract, and the middleware's use of
it) over generated input: nothing a client sends makes decoding raise, and text
that was encoded the usual ways is read back exactly.

Matcher-level properties live in tests/test_matcher_properties.py; the
coverage-guided fuzzer over the same code is fuzz/fuzz_request.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, quote_plus, unquote_to_bytes, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from deterrence import extract
from deterrence.middleware import DeterrenceMiddleware

NAMES = frozenset({"q", "query"})
# Charsets a client may name: real ones, codecs that are no text encoding or that
# refuse errors="replace", and nonsense.
CHARSETS = st.one_of(
    st.sampled_from(
        [
            "utf-8",
            "iso-8859-1",
            "shift_jis",
            "utf-16",
            "utf-32",
            "utf-7",
            "koi8-r",
            "idna",
            "punycode",
            "undefined",
            "rot13",
            "base64",
            "zlib",
            "unicode_escape",
            "utf\x00",
            "",
        ]
    ),
    st.text(max_size=12),
)
# Text that can be encoded at all (lone surrogates cannot).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@given(st.binary(max_size=300))
def test_percent_decode_agrees_with_the_standard_library(raw: bytes) -> None:
    assert extract.percent_decode(raw, plus_is_space=False) == unquote_to_bytes(raw)


@given(st.binary(max_size=300))
def test_percent_decode_round_trips_any_bytes(raw: bytes) -> None:
    assert extract.percent_decode(quote_from_bytes(raw, safe="").encode()) == raw
    assert extract.percent_decode(quote_plus(raw, safe="").encode()) == raw
    assert len(extract.percent_decode(raw)) <= len(raw)


@given(st.binary(max_size=300), CHARSETS)
def test_form_values_never_raise(body: bytes, charset: str) -> None:
    for value in extract.form_values(body, NAMES, charset):
        assert isinstance(value, str)


@given(TEXT, st.sampled_from(["utf-8", "iso-8859-1", "shift_jis", "utf-16"]))
def test_form_values_read_back_an_encoded_value(value: str, charset: str) -> None:
    try:
        encoded = urlencode({"other": "x", "Q": value}, encoding=charset).encode()
    except UnicodeEncodeError:
        return  # the charset cannot hold this text; no client could send it
    readings = list(extract.form_values(encoded, NAMES, charset))
    # What the charset makes of the text (Shift_JIS reads ¥ back as a backslash).
    assert readings[0] == value.encode(charset).decode(charset)


@given(TEXT)
def test_double_encoded_values_are_read_both_ways(value: str) -> None:
    twice = quote(quote(value, safe=""), safe="").encode()
    assert value in extract.form_values(b"q=" + twice, NAMES)


@given(st.binary(max_size=400), st.text(max_size=20), CHARSETS)
def test_multipart_values_never_raise(body: bytes, boundary: str, charset: str) -> None:
    for value in extract.multipart_values(body, boundary, NAMES, charset):
        assert isinstance(value, str)


@given(TEXT.filter(lambda v: "--" not in v))
def test_multipart_values_read_back_a_field(value: str) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="q"\r\n\r\n{value}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n'
        f"\r\nnot a search\r\n--{boundary}--\r\n"
    ).encode()
    assert list(extract.multipart_values(body, boundary, NAMES)) == [value]


@given(st.binary(max_size=400), CHARSETS)
def test_json_values_never_raise(body: bytes, charset: str) -> None:
    for value in extract.json_values(body, NAMES, charset):
        assert isinstance(value, str)


@given(
    TEXT,
    st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32"]),
    st.booleans(),
)
def test_json_values_read_back_a_query_in_any_unicode_encoding(
    value: str, encoding: str, declared: bool
) -> None:
    body = json.dumps({"page": 2, "filters": {"Query": value}}).encode(encoding)
    charset = extract.charset_of({"charset": encoding}) if declared else "utf-8"
    assert list(extract.json_values(body, NAMES, charset)) == [value]


@given(st.text(max_size=80))
def test_content_type_and_charset_never_raise(header: str) -> None:
    media, params = extract.content_type(header)
    assert media == media.lower()
    extract.charset_of(params)


# --- the middleware as a whole: any query string and body, never an exception ----


@pytest.fixture(scope="module")
def middleware(tmp_path_factory: pytest.TempPathFactory) -> DeterrenceMiddleware:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    data_dir: Path = tmp_path_factory.mktemp("data")
    return DeterrenceMiddleware(app, data_dir=data_dir, store_enabled=False)


CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            b"application/x-www-form-urlencoded",
            b"application/x-www-form-urlencoded; charset=idna",
            b"multipart/form-data; boundary=xyz",
            b"multipart/form-data",
            b"application/json",
            b"application/json; charset=punycode",
            b"application/ld+json; charset=utf-16",
            b"text/plain",
        ]
    ),
    st.binary(max_size=40),
)


def call(
    middleware: DeterrenceMiddleware,
    method: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
) -> list[Message]:
    sent: list[Message] = []
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/search",
        "raw_path": b"/search",
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(middleware(scope, receive, send))
    return sent


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS"]),
    query=st.binary(max_size=200),
    content_type=CONTENT_TYPES,
    extra_headers=st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=40))),
    chunks=st.lists(st.binary(max_size=200), max_size=4),
)
def test_middleware_answers_any_request(
    middleware: DeterrenceMiddleware,
    method: str,
    query: bytes,
    content_type: bytes,
    extra_headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
) -> None:
    headers = [(b"content-type", content_type), *((k.lower(), v) for k, v in extra_headers)]
    sent = call(middleware, method, query, headers, chunks)
    assert sent[0]["type"] == "http.response.start"
    # The app's 204, the warning, or a body nested too deep to parse (413).
    assert sent[0]["status"] in (204, middleware.settings.block_status, 413)
    # With on_error=open a swallowed exception would still answer 204: count them.
    for kind in ("decode", "match_exception"):
        assert errors(middleware, kind) == 0, f"inspecting raised ({kind})"


def errors(middleware: DeterrenceMiddleware, kind: str) -> float:
    value = middleware.recorder.registry.get_sample_value("deterrence_errors_total", {"kind": kind})
    return value or 0.0


def test_middleware_catches_a_term_in_a_utf16_json_body(middleware: DeterrenceMiddleware) -> None:
    body = json.dumps({"query": "zorblax"}).encode("utf-16")
    sent = call(middleware, "POST", b"", [(b"content-type", b"application/json")], [body])
    assert sent[0]["status"] == middleware.settings.block_status
    headers = dict(sent[0]["headers"])
    assert b"zorblax" not in b"".join(headers.values())


@given(TEXT, st.sampled_from(["q[]", "q[0]", "Q[a][b]", "q%5B%5D", " q "]))
def test_bracketed_and_spaced_names_count_as_the_name(value: str, name: str) -> None:
    encoded = f"{name}={quote(value, safe='')}".encode()
    assert value in extract.form_values(encoded, NAMES)


@given(st.integers(min_value=1, max_value=20_000))
def test_json_numbers_of_any_size_do_not_hide_the_query(digits: int) -> None:
    body = b'{"n": ' + b"9" * digits + b', "q": "found"}'
    assert list(extract.json_values(body, NAMES)) == ["found"]
