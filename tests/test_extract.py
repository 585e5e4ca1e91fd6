"""JSON bodies as apps read them: no depth, duplicate key or nesting under a query
key hides a value from deterrence.extract. (Decoding properties over generated
input are in test_fuzz_properties.py.)"""

from __future__ import annotations

import json

import pytest

from deterrence import extract

KEYS = frozenset({"q", "query"})


@pytest.mark.parametrize("depth", [1, 33, 40, 500])
def test_a_key_at_any_depth_python_can_parse_is_read(depth: int) -> None:
    body = '{"a": ' * depth + '{"q": "found"}' + "}" * depth
    assert list(extract.json_values(body.encode(), KEYS)) == ["found"]
    in_arrays = "[" * depth + '{"Query": "found"}' + "]" * depth
    assert list(extract.json_values(in_arrays.encode(), KEYS)) == ["found"]


def test_every_value_of_a_key_given_twice_is_read() -> None:
    """json.loads keeps the last, other parsers the first: both are inspected."""
    body = b'{"q": "first", "page": 2, "q": "last", "Q": "third"}'
    assert list(extract.json_values(body, KEYS)) == ["first", "last", "third"]


def test_every_string_under_a_query_key_is_read() -> None:
    body = {"query": ["a", ["b"], {"text": "c", "n": 1}], "other": ["d"], "q": None}
    assert list(extract.json_values(json.dumps(body).encode(), KEYS)) == ["a", "b", "c"]


def test_json_too_deep_to_parse_is_an_error_not_an_empty_body() -> None:
    """Other parsers may read it, so it must not pass as a body without a query."""
    body = b"[" * 100_000 + b'{"q": "hidden"}' + b"]" * 100_000
    with pytest.raises(extract.TooDeep):
        list(extract.json_values(body, KEYS))
    unclosed = b'{"q": ' * 100_000  # invalid too, but the parser gives up on the depth first
    with pytest.raises(extract.TooDeep):
        list(extract.json_values(unclosed, KEYS))


@pytest.mark.parametrize("body", [b"", b"{", b'{"q": }', b"[1, 2", b"\xff\xfe"])
def test_json_that_is_not_json_has_no_query(body: bytes) -> None:
    assert list(extract.json_values(body, KEYS)) == []
