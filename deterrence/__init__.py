"""deterrence: warn people who search for child sexual abuse material, and point
them to help. See README.md and DESIGN.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deterrence.lists import ListError, TermList, load_lists
from deterrence.matcher import Match, Matcher
from deterrence.settings import Settings

if TYPE_CHECKING:
    from deterrence.middleware import DeterrenceMiddleware

__version__ = "0.1.0"
__all__ = [
    "DeterrenceMiddleware",
    "ListError",
    "Match",
    "Matcher",
    "Settings",
    "TermList",
    "load_lists",
]


def __getattr__(name: str) -> Any:
    # The middleware pulls in Starlette and the page templates; matcher-only
    # users (list tooling, benchmarks) don't pay for that at import.
    if name == "DeterrenceMiddleware":
        from deterrence.middleware import DeterrenceMiddleware

        return DeterrenceMiddleware
    raise AttributeError(name)
