"""Find the search text in a request: query strings, form and multipart
fields, JSON bodies.

Everything here is defensive: malformed percent-escapes, invalid UTF-8, odd
charsets, broken multipart and JSON all decode to *something* (with U+FFFD
where bytes make no sense) rather than raise, because a request we cannot
parse must still be inspected, and must never become a 500. The one exception is
:class:`TooDeep`: JSON nested deeper than Python's parser goes, which other
parsers may read, so the caller must not take it for a body without a query.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Collection, Iterator
from typing import Any

_PERCENT_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
_HEX = b"0123456789abcdefABCDEF"


class TooDeep(Exception):
    """A JSON body nested too deep for ``json.loads``: it cannot be inspected."""


def percent_decode(raw: bytes, *, plus_is_space: bool = True) -> bytes:
    """RFC 3986 percent-decoding; malformed escapes are kept as they are."""
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return raw
    out = bytearray()
    i = 0
    length = len(raw)
    while i < length:
        byte = raw[i]
        if byte == 0x25 and i + 2 < length and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def decode_text(raw: bytes, charset: str = "utf-8") -> str:
    """``raw`` as text in ``charset``, falling back to UTF-8. Never raises: some
    codecs refuse ``errors="replace"`` (idna, punycode) or are not text codecs
    at all (rot13, base64), and a client picks the charset."""
    try:
        return raw.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError):
        return raw.decode("utf-8", errors="replace")


def value_readings(raw: bytes, charset: str = "utf-8") -> list[str]:
    """The text of one encoded value: decoded once, and once more when the
    result still holds percent-escapes (double encoding, ``%257A``). A value
    in another charset than UTF-8 is read both ways: the app may ignore the
    declared charset, and inspecting more is the safe side."""
    if charset == "utf-8" and b"%" not in raw:  # the common case: one reading
        return [raw.replace(b"+", b" ").decode("utf-8", errors="replace")]
    once = percent_decode(raw)
    twice = percent_decode(once, plus_is_space=False) if _PERCENT_ESCAPE.search(once) else None
    charsets = (charset,) if charset == "utf-8" else (charset, "utf-8")
    readings: list[str] = []
    for encoded in (once, twice):
        if encoded is None:
            continue
        for name in charsets:
            text = decode_text(encoded, name)
            if text not in readings:
                readings.append(text)
    return readings


def form_values(body: bytes, names: Collection[str], charset: str = "utf-8") -> Iterator[str]:
    """Values of the wanted names in ``a=1&b=2`` data. Names compare without
    regard to case (``Q=`` is inspected like ``q=``) or a bracket suffix
    (``q[]=``, ``q[0]=``: PHP and Rails read those as ``q``), since frameworks
    differ and inspecting more is the safe side."""
    if not body:
        return
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        if charset == "utf-8" and name.isalnum():  # ASCII letters and digits: the usual case
            if name.decode("ascii").lower() in names:
                yield from value_readings(value, charset)
            continue
        decoded_names = value_readings(name, charset)
        if any(_base_name(n) in names for n in decoded_names):
            yield from value_readings(value, charset)


def _base_name(name: str) -> str:
    return name.partition("[")[0].strip().casefold()


def content_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Media type (lower case) and parameters of a Content-Type header."""
    if not header:
        return "", {}
    media, *params = header.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), parsed


def charset_of(params: dict[str, str]) -> str:
    charset = params.get("charset", "utf-8") or "utf-8"
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError):  # unknown, or not even a name (NUL bytes)
        return "utf-8"


def multipart_values(
    body: bytes, boundary: str, names: Collection[str], charset: str = "utf-8"
) -> Iterator[str]:
    """Text fields (no ``filename``) of a multipart/form-data body."""
    if not boundary:
        return
    delimiter = b"--" + boundary.encode("latin-1", errors="replace")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            head, separator, content = part.partition(b"\n\n")
            if not separator:
                continue
        disposition = ""
        part_charset = charset
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value
            elif key.strip().lower() == "content-type":
                part_charset = charset_of(content_type(value)[1])
        params = content_type("x;" + disposition)[1]
        if "filename" in params or params.get("name", "").casefold() not in names:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        yield decode_text(content, part_charset)


def json_values(body: bytes, keys: Collection[str], charset: str = "utf-8") -> Iterator[str]:
    """String values under the wanted keys, at any depth, of a JSON body: a
    string or, in an array or object under such a key, every string in it.

    When the body does not parse in ``charset`` it is tried once more the way
    ``json.loads`` reads bytes (UTF-8, -16 or -32 by their byte pattern):
    that is what most Python apps do, whatever the Content-Type says, so a
    UTF-16 body must not slip past uninspected. A key given twice is read both
    times: parsers differ in which one they keep. Raises :class:`TooDeep` when
    the body is nested too deep to parse either way."""
    too_deep = False
    for source in (decode_text(body, charset), body):
        try:
            document = json.loads(source, parse_int=_skip_number, object_pairs_hook=tuple)
        except RecursionError:
            too_deep = True
            continue
        except ValueError:
            continue
        yield from _walk_json(document, keys)
        return
    if too_deep:
        raise TooDeep


def _skip_number(digits: str) -> None:
    """Numbers are never searched; converting them could fail (Python refuses
    integers of more than 4300 digits), and then the query beside them would go
    unread, though apps in other languages read it."""


def _walk_json(document: Any, keys: Collection[str]) -> Iterator[str]:
    """Objects come as tuples of (key, value) pairs (``object_pairs_hook``), arrays
    as lists. A loop, not recursion: whatever ``json.loads`` could parse, any depth
    of it is read."""
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, wanted = stack.pop()
        if isinstance(node, str):
            if wanted:
                yield node
        elif isinstance(node, list):
            stack.extend((item, wanted) for item in reversed(node))
        elif isinstance(node, tuple):
            stack.extend((value, wanted or key.casefold() in keys) for key, value in reversed(node))
