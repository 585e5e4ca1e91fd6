"""Request paths as a router sees them.

Proxies and servers merge repeated slashes and resolve ``.`` and ``..`` before they
pick a route, so ``//search`` or ``/x/../search`` reach the search. Deciding whether
a request is a search must look at the same normalized path, or such a request
would be passed on unchecked.
"""

from __future__ import annotations

__all__ = ["normalize_path"]


def normalize_path(path: str) -> str:
    """Merge slashes and resolve ``.`` and ``..`` (never above the root); a trailing
    slash is kept."""
    if "//" not in path and "/." not in path and path.startswith("/"):
        return path  # the common case: nothing to do
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalized = "/" + "/".join(segments)
    if segments and path.endswith(("/", "/.", "/..")):
        normalized += "/"
    return normalized
