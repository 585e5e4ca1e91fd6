"""deterrence: warn people who search for child sexual abuse material, and point
them to help. See README.md and DESIGN.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deterrence.lists import ListError, TermList, load_lists
from deterrence.matcher import Match, Matcher

if TYPE_CHECKING:
    from deterrence.middleware import DeterrenceMiddleware
    from deterrence.settings import Settings

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
    # The middleware pulls in Starlette and the page templates, and Settings
    # pydantic (two thirds of a reload's child build at 5,000 terms was importing
    # it): matcher-only users (list tooling, the build child, benchmarks) don't
    # pay for either at import.
    if name == "DeterrenceMiddleware":
        from deterrence.middleware import DeterrenceMiddleware

        return DeterrenceMiddleware
    if name == "Settings":
        from deterrence.settings import Settings

        return Settings
    raise AttributeError(name)
