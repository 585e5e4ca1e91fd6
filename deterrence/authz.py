"""A decision service for proxies that ask another server whether a request may
pass: nginx ``auth_request``, Traefik ``forwardAuth``, Caddy ``forward_auth`` and
Envoy ``ext_authz`` (HTTP service). ``deterrence authz`` serves :class:`AuthzApp`.

Each proxy tells the service about the original request in its own way:

==========  ======================  =============================================
endpoint    proxy                   original method and URI
==========  ======================  =============================================
``/nginx``  nginx ``auth_request``  ``X-Original-Method``, ``X-Original-URI`` (set
                                    by ``deploy/nginx/deterrence.conf``)
``/traefik`` Traefik ``forwardAuth`` ``X-Forwarded-Method``, ``X-Forwarded-Uri``
``/caddy``  Caddy ``forward_auth``  ``X-Forwarded-Method``, ``X-Forwarded-Uri``
``/envoy``  Envoy ``ext_authz``     the request itself: its method, and its path
                                    after the ``path_prefix`` ``/envoy``
==========  ======================  =============================================

The service rebuilds the original request's ASGI scope (method, path, raw path and
query string; the headers the proxy forwarded, ``Accept-Language`` among them) and
runs it through :class:`~deterrence.middleware.DeterrenceMiddleware` around an app
that only notes that the request got through. The middleware does the matching,
counting and page rendering exactly as it does in a Python site.

Which requests are searches is the proxy's decision: the shipped configurations ask
only for the search locations, and the service inspects every request it is asked
about (``search_paths`` still name the metrics ``route`` when they match; other
paths count as route ``*``). Non-search traffic never reaches the service.

The answers suit each proxy:

* allowed: ``200`` with an empty body (Envoy allows only on exactly 200). A match
  of a ``warn`` list adds ``Deterrence-Action: warn``, which the shipped configs
  copy onto the request to the site so it can show a banner.
* blocked, nginx: ``auth_request`` understands only 2xx, 401 and 403 (anything else
  becomes a 500), so the answer is an empty ``403`` with ``Deterrence-Variant``;
  nginx then serves ``{prefix}/warning?v=<variant>`` from this service through
  ``error_page 403``. The page view is counted there, once.
* blocked, Traefik, Caddy, Envoy: these return a non-2xx auth answer to the client
  as it is (status, headers, body), so the answer is the warning page itself with
  its privacy headers (DESIGN §6). A configured ``block_status`` of 2xx would read
  as "allowed" to them, so it becomes ``403``.
* too long to inspect, with ``on_oversize = "reject"`` (the middleware's 414 or
  413): for Traefik, Caddy and Envoy that page itself. nginx would turn a 414 into a
  500, and the shipped config serves a search unchecked on a 500 (fail open), so
  nginx gets an empty ``401``, and ``error_page 401`` fetches the 414 page from
  ``{prefix}/too-long`` on this service. (nginx never sends the body, so only the
  query string can be too long.) ``closed`` answers as for a block, ``open`` allows.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from starlette.types import Message, Receive, Scope, Send

from deterrence.asgi import acknowledge_lifespan
from deterrence.headers import raw_headers
from deterrence.middleware import (
    REJECTED,
    URI_TOO_LONG,
    Decision,
    DeterrenceMiddleware,
    decision_of,
)
from deterrence.pages import PLAIN_HEADERS, PageRecorder, error_response
from deterrence.paths import normalize_path
from deterrence.settings import Settings

__all__ = ["AuthzApp", "Flavor", "OriginalRequest", "original_request", "rewrite_scope"]

Flavor = Literal["nginx", "traefik", "caddy", "envoy"]
ENDPOINTS: dict[str, Flavor] = {
    "/nginx": "nginx",
    "/traefik": "traefik",
    "/caddy": "caddy",
}
ENVOY_PREFIX = "/envoy"
INSPECT_EVERY_PATH = "*"
ACTION_HEADER = "Deterrence-Action"
VARIANT_HEADER = "Deterrence-Variant"
BLOCKED_STATUS = 403
REJECTED_STATUS = 401
"""nginx's answer for a search too long to inspect (``auth_request`` passes only 401
and 403 on); the config then fetches ``TOO_LONG_PAGE``."""
TOO_LONG_PAGE = "too-long"

_OUTCOME_KEY = "deterrence.authz"
_PLAIN_HEADERS = [*raw_headers(PLAIN_HEADERS), (b"content-type", b"text/plain; charset=utf-8")]
_ALLOWED_HEADERS = [(b"cache-control", b"no-store"), (b"content-length", b"0")]
_HEADERS_BY_FLAVOR: dict[Flavor, tuple[bytes, bytes]] = {
    "nginx": (b"x-original-method", b"x-original-uri"),
    "traefik": (b"x-forwarded-method", b"x-forwarded-uri"),
    "caddy": (b"x-forwarded-method", b"x-forwarded-uri"),
}


class BadDecisionRequest(ValueError):
    """The proxy did not say which request to decide about (a configuration error)."""


@dataclass(frozen=True, slots=True)
class OriginalRequest:
    method: str
    target: bytes
    """The request target as the client sent it: path and query, still encoded."""


def original_request(flavor: Flavor, scope: Scope) -> OriginalRequest:
    """What the proxy says the client asked for."""
    if flavor == "envoy":
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = raw_path[len(ENVOY_PREFIX) :] or b"/"
        query: bytes = scope.get("query_string", b"")
        return OriginalRequest(scope["method"], target + b"?" + query if query else target)
    method_header, uri_header = _HEADERS_BY_FLAVOR[flavor]
    method = uri = None
    for key, value in scope["headers"]:
        if key == method_header:
            method = value.decode("latin-1").strip().upper()
        elif key == uri_header:
            uri = value.strip()
    if not uri:
        raise BadDecisionRequest(f"the {flavor} decision request has no {uri_header.decode()}")
    if uri.startswith((b"http://", b"https://")):  # absolute form: keep path and query
        uri = b"/" + uri.split(b"/", 3)[3] if uri.count(b"/") >= 3 else b"/"
    if not uri.startswith(b"/"):
        raise BadDecisionRequest(f"{uri_header.decode()} is not a path")
    return OriginalRequest(method or "GET", uri)


def rewrite_scope(scope: Scope, original: OriginalRequest) -> Scope:
    """A copy of ``scope`` that looks like the original request reached this server."""
    raw_path, _, query = original.target.partition(b"#")[0].partition(b"?")
    return {
        **scope,
        "method": original.method,
        "path": normalize_path(unquote(raw_path.decode("latin-1"), errors="replace")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "state": dict(scope.get("state") or {}),
    }


@dataclass(slots=True)
class _Outcome:
    allowed: bool = False
    decision: Decision | None = None


@dataclass(slots=True)
class _DeferredPageView:
    """For nginx the warning page rendered during the decision is thrown away and
    fetched again from ``{prefix}/warning``; its view is counted then, not now."""

    variant: str | None = None


_deferred_page_view: ContextVar[_DeferredPageView | None] = ContextVar(
    "deterrence_deferred_page_view", default=None
)


@dataclass(slots=True)
class _PageViewGate:
    """The pages' recorder, except that page views are deferred while a nginx
    decision is being made (see :class:`_DeferredPageView`)."""

    recorder: PageRecorder

    def page_view(self, *, variant: str, locale: str) -> None:
        deferred = _deferred_page_view.get()
        if deferred is not None:
            deferred.variant = variant
            return
        self.recorder.page_view(variant=variant, locale=locale)

    def help_click(self, *, service: str, variant: str) -> None:
        self.recorder.help_click(service=service, variant=variant)

    def error(self, kind: str) -> None:
        self.recorder.error(kind)


async def _allow(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind the middleware: reaching it means the request may pass."""
    if scope["type"] == "lifespan":
        await acknowledge_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    outcome: _Outcome | None = scope.get(_OUTCOME_KEY)
    if outcome is None:  # not a decision request: nothing is served here
        await _send_plain(send, 404, b"Not found")
        return
    outcome.allowed = True
    outcome.decision = decision_of(scope)


class AuthzApp:
    """The decision service. ``settings`` and ``overrides`` as for the middleware."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        if settings is None:
            settings = Settings(**overrides)
        elif overrides:
            settings = Settings(**{**settings.model_dump(), **overrides})
        self.settings = settings
        inspect_all = settings.model_copy(
            update={"search_paths": [*settings.search_paths, INSPECT_EVERY_PATH]}
        )
        self.middleware = DeterrenceMiddleware(_allow, inspect_all)
        self.recorder = self.middleware.recorder
        self.middleware.pages.recorder = _PageViewGate(self.middleware.recorder)
        self._prefix = settings.prefix.rstrip("/") + "/"
        self._too_long_path = self._prefix + TOO_LONG_PAGE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.middleware(scope, receive, send)  # lifespan
            return
        flavor = _flavor_of(scope)
        if flavor is None:
            if scope["path"] == self._too_long_path:
                await error_response(URI_TOO_LONG)(scope, receive, send)
            elif self._served_here(scope["path"]):
                await self.middleware(scope, receive, send)  # warning page, assets, metrics
            else:
                await _send_plain(send, 404, b"Not found")
            return
        try:
            inner = self._original_scope(flavor, scope)
        except BadDecisionRequest as exc:
            await _send_plain(send, 400, str(exc).encode())
            return
        if flavor == "envoy":
            # uvicorn builds the access-log line from this scope. The middleware's log
            # filter redacts it already; dropping the query here keeps the search out
            # even when an operator turns that redaction off.
            scope["query_string"] = b""
        if inner is None or self.middleware.passes_from_memo(inner):
            await _send_allowed(send, flavor, None)
            return
        outcome = _Outcome()
        inner[_OUTCOME_KEY] = outcome
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        deferred = _DeferredPageView() if flavor == "nginx" else None
        token = _deferred_page_view.set(deferred)
        try:
            await self.middleware(inner, receive, capture)
        finally:
            _deferred_page_view.reset(token)

        if outcome.allowed:
            await _send_allowed(send, flavor, outcome.decision)
        elif REJECTED in inner and flavor == "nginx":
            await _send_plain(send, REJECTED_STATUS, b"")
        elif REJECTED in inner:
            for message in captured:  # the middleware's 414 or 413 page, as it is
                await send(message)
        elif deferred is not None:
            headers = [(VARIANT_HEADER.lower().encode(), (deferred.variant or "").encode())]
            await _send_plain(send, BLOCKED_STATUS, b"", headers)
        else:
            await _send_block_page(send, captured)

    def quick_answer(self, scope: Scope) -> list[tuple[bytes, bytes]] | None:
        """The headers of the empty 200 that allows a decision request needing no
        matching: about deterrence's own pages, or a repeat of a search that
        matched nothing (counted, as in ``__call__``). None when the full decision
        is needed. For a server that answers without an ASGI cycle
        (:mod:`deterrence.decision_server`)."""
        flavor = _flavor_of(scope)
        if flavor is None:
            return None
        try:
            inner = self._original_scope(flavor, scope)
        except BadDecisionRequest:
            return None  # __call__ says what is wrong
        if inner is None or self.middleware.passes_from_memo(inner):
            return _allowed_headers(flavor, None)
        return None

    def _original_scope(self, flavor: Flavor, scope: Scope) -> Scope | None:
        """The scope of the request the proxy asks about; None for deterrence's
        own pages, which are never blocked."""
        inner = rewrite_scope(scope, original_request(flavor, scope))
        return None if self._served_here(inner["path"]) else inner

    def _served_here(self, path: str) -> bool:
        """Paths the middleware answers itself (pages, assets, metrics)."""
        return path.startswith(self._prefix) or path == self.settings.metrics_path


def _flavor_of(scope: Scope) -> Flavor | None:
    path: str = scope["path"]
    flavor = ENDPOINTS.get(path)
    if flavor is not None:
        return flavor
    if path == ENVOY_PREFIX or path.startswith(ENVOY_PREFIX + "/"):
        return "envoy"
    return None


def _allowed_headers(flavor: Flavor, decision: Decision | None) -> list[tuple[bytes, bytes]]:
    """The answer every allowed search gets: read by the proxy, never shown to a
    visitor, so it carries only what the proxy uses (and no-store, so that no
    cache between them keeps a decision)."""
    warn = decision is not None and decision.action == "warn"
    if warn or flavor == "caddy":
        # Caddy before 2.7 copies an absent copy_headers field as its literal
        # placeholder text; an empty value is copied as empty, which means "no warn".
        return [*_ALLOWED_HEADERS, (ACTION_HEADER.lower().encode(), b"warn" if warn else b"")]
    return _ALLOWED_HEADERS


async def _send_allowed(send: Send, flavor: Flavor, decision: Decision | None) -> None:
    headers = _allowed_headers(flavor, decision)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _send_block_page(send: Send, captured: list[Message]) -> None:
    for message in captured:
        if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
            message = {**message, "status": BLOCKED_STATUS}
        await send(message)


async def _send_plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_PLAIN_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
