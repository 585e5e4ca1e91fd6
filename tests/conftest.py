"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    """A client that sends exactly what the test says (no proxies from the
    environment, no redirects followed)."""
    with httpx2.Client(trust_env=False, timeout=10, follow_redirects=False) as client:
        yield client
