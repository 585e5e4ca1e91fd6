"""The response headers of every page deterrence serves (DESIGN §6), in one place."""

from __future__ import annotations

from collections.abc import Mapping


def privacy_headers(content_security_policy: str) -> dict[str, str]:
    """No referrer (help services must not learn the query from ``Referer``), no
    caching, no sniffing, no indexing, no framing, and the page's own CSP."""
    return {
        "Content-Security-Policy": content_security_policy,
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Frame-Options": "DENY",
    }


BASE_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
"""Nothing loads, nothing posts, nothing frames: the policy of every response that is
not the warning page (which adds its own style and favicon)."""


def raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """The same headers as an ASGI ``http.response.start`` header list."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


PLAIN_HEADERS = privacy_headers(BASE_CSP)
"""Headers of every deterrence response that is not the HTML warning page."""
