"""Operator endpoints under ``{prefix}/admin/``: for now ``POST {prefix}/admin/reload``,
which reloads the term lists and answers with the result as JSON (200 when the new
lists are in service, 422 with the problems by file and line when they are not).

Access needs ``settings.admin_token``. Without one the endpoints do not exist (404):
nothing to guess, nothing to attack. With one, a request must carry
``Authorization: Bearer <token>`` (compared in constant time).

Cross-site request forgery needs a browser to send a request with credentials it
attaches by itself — cookies, or cached HTTP Basic credentials. A bearer token is
neither: a page on another site could only add the header through ``fetch()``, which
makes the browser ask first (a CORS preflight ``OPTIONS``), and this app never allows
it. The token alone therefore defeats CSRF; two more checks keep it that way should
anyone ever front the endpoint with cookie or Basic auth:

- a request the browser marks as coming from another site (``Sec-Fetch-Site:
  cross-site`` or ``same-site``), or whose ``Origin`` is not this host, is refused (403);
- a body with one of the content types an HTML form can send without a preflight
  (``application/x-www-form-urlencoded``, ``multipart/form-data``, ``text/plain``) is
  refused (415): the endpoint takes no body, or JSON.

curl and scripts send neither header and need nothing special.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from deterrence.pages import PLAIN_HEADERS
from deterrence.reload import MatcherHolder
from deterrence.settings import Settings

REALM = "deterrence admin"
FORM_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
"""Content types a cross-site HTML form can send without a CORS preflight."""
_REFUSED_FETCH_SITES = frozenset({"cross-site", "same-site"})


class AdminApp:
    """ASGI app for ``{settings.prefix}/admin/*``; mount it with
    ``DeterrenceMiddleware.mount("admin", AdminApp(settings, holder))``."""

    def __init__(self, settings: Settings, holder: MatcherHolder) -> None:
        self.settings = settings
        self.holder = holder
        self.base = settings.prefix.rstrip("/") + "/admin"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await self.respond(scope, receive)
        await response(scope, receive, send)

    async def respond(self, scope: Scope, receive: Receive) -> Response:
        token = self.settings.admin_token
        path: str = scope["path"]
        if token is None or path.rstrip("/") != self.base + "/reload":
            return _json(404, {"error": "not found"})
        if scope["method"] != "POST":
            return _json(405, {"error": "method not allowed"}, {"Allow": "POST"})
        headers = Headers(scope=scope)
        if _cross_site(headers):
            return _json(403, {"error": "cross-site requests are refused"})
        if not _bearer_matches(headers.get("authorization", ""), token.get_secret_value()):
            return _json(
                401,
                {"error": "authentication required"},
                {"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media in FORM_CONTENT_TYPES:
            return _json(415, {"error": "send no body, or application/json"})
        await _drain(receive)
        result = await self.holder.reload("admin endpoint")
        return _json(200 if result.result == "ok" else 422, result.summary())


def _cross_site(headers: Headers) -> bool:
    if headers.get("sec-fetch-site", "").strip().lower() in _REFUSED_FETCH_SITES:
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser, or a same-origin GET/HEAD
    parts = urlsplit(origin)
    return origin == "null" or parts.netloc.lower() != headers.get("host", "").lower()


def _bearer_matches(authorization: str, token: str) -> bool:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


async def _drain(receive: Receive) -> None:
    """Read (and ignore) the request body, so the server can reuse the connection."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _json(status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(content, status, {**PLAIN_HEADERS, **(extra or {})}, "application/json")
