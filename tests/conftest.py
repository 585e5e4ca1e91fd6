"""Fixtures shared across test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx2
import pytest
from hypothesis import settings

# CI draws the same examples on every run, so that its verdict on a commit does not
# depend on luck; a developer's runs draw new ones each time and find what CI would
# not (a failure found so is replayed from .hypothesis/ until it is fixed).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    """A client that sends exactly what the test says (no proxies from the
    environment, no redirects followed)."""
    with httpx2.Client(trust_env=False, timeout=10, follow_redirects=False) as client:
        yield client
