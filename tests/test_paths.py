"""Path normalization: what a router would take the path for."""

from __future__ import annotations

import pytest

from deterrence.paths import normalize_path


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("/search", "/search"),
        ("//search", "/search"),
        ("/./search", "/search"),
        ("/x/../search", "/search"),
        ("/../../search", "/search"),
        ("/search/", "/search/"),
        ("/search/.", "/search/"),
        ("/a/.hidden/b", "/a/.hidden/b"),
        ("/search.", "/search."),
        ("/", "/"),
        ("", "/"),
        ("search", "/search"),
    ],
)
def test_paths_are_normalized_like_routers_do(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized
