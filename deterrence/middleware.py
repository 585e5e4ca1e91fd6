"""``DeterrenceMiddleware``: pure ASGI middleware in front of a search.

For a request to a configured search path it finds the query text (query
string, form, multipart and JSON bodies, whatever the method), matches it, and
then:

- ``block``: answers with the warning page itself (HTML, or JSON for clients
  that ask for it); the app never sees the request;
- ``warn``: passes the request on with the decision in
  ``scope["state"]["deterrence"]`` (see :func:`warning_banner`);
- ``count``: passes it on untouched, counting only.

Everything else — other paths, websockets, lifespan — passes straight through,
except the routes deterrence serves itself under ``settings.prefix`` and the
metrics route. A body the middleware read is replayed to the app byte for byte.
A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
passes uninspected: it carries no one's search, and blocking it would keep the
browser from ever fetching the warning. Any other ``OPTIONS`` is inspected like a
``GET``: some sites run the search whatever the method.

Term lists reload without a restart (:mod:`deterrence.reload`): polling, SIGHUP
and ``POST {prefix}/admin/reload`` (:mod:`deterrence.admin`) start while the
app's lifespan runs.

When inspecting fails — decoding raised, or the matcher did — the request is
answered per ``settings.on_error``: ``open`` passes it on, ``closed`` shows the
warning; either way it is counted (``decode``, ``match_exception``).

A search too long to inspect whole — a text over ``max_query_chars``, a body over
``max_body_bytes`` or JSON nested too deep to parse — is matched as far as it can
be; unless that part holds a ``block`` match it is answered per
``settings.on_oversize``: ``reject`` answers 414 (the query string) or 413 (a body)
with a small page of its own, ``closed`` shows the warning, ``open`` passes it on.
Either way it is counted (``query_too_long``, ``body_too_large``). Matching the whole
text is no option: the matching time grows faster than the text.

The query never leaves this module: it is not logged, counted, put in a header
or shown on the page, and access-log lines of inspected requests are redacted
(:mod:`deterrence.logs`).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deterrence import extract
from deterrence.admin import AdminApp
from deterrence.lists import SEVERITY
from deterrence.logs import install_access_log_redaction
from deterrence.matcher import Match, Matcher
from deterrence.memo import UNSEEN, Memo, Unseen
from deterrence.metrics import NO_VARIANT, Recorder
from deterrence.pages import WarningPages, error_response
from deterrence.paths import normalize_path
from deterrence.reload import MatcherHolder
from deterrence.settings import Settings

logger = logging.getLogger("deterrence")

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
URI_TOO_LONG = 414
CONTENT_TOO_LARGE = 413
REJECTED = "deterrence.rejected"
"""Scope key: the status the middleware rejected a request with (413 or 414), for a
caller that answers for it (the decision service)."""
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


@dataclass(frozen=True, slots=True)
class Decision:
    """What deterrence decided about a request the app still handles (``warn``
    or ``count``). ``match`` says why; it never holds the query text."""

    action: str
    match: Match | None
    variant: str
    _pages: WarningPages = field(repr=False)
    _headers: Headers = field(repr=False)

    def banner_html(self) -> Markup:
        """The warning banner to show above the results (empty unless ``warn``)."""
        if self.action != "warn":
            return Markup("")
        return self._pages.banner_html(self._headers, self.match, self.variant)


def decision_of(scope_or_request: Scope | HTTPConnection) -> Decision | None:
    """The deterrence decision for this request, or None."""
    scope = (
        scope_or_request.scope if isinstance(scope_or_request, HTTPConnection) else scope_or_request
    )
    state = scope.get("state") or {}
    decision = state.get("deterrence")
    return decision if isinstance(decision, Decision) else None


def warning_banner(scope_or_request: Scope | HTTPConnection) -> Markup:
    """HTML for a warning banner above search results when the query matched a
    ``warn`` list, else empty markup. Use it in a template:
    ``{{ warning_banner(request) }}``."""
    decision = decision_of(scope_or_request)
    return decision.banner_html() if decision is not None else Markup("")


class SearchRoutes:
    """Which paths are searches: exact paths and glob patterns. A trailing slash
    does not count (``/search/`` is ``/search``): apps redirect one to the other,
    query and all, so both must be inspected and redacted."""

    def __init__(self, patterns: list[str]) -> None:
        exact = [p for p in patterns if not any(c in p for c in "*?[")]
        self.exact = {_without_slash(p): p for p in exact}
        self.globs = [
            (p, re.compile(fnmatch.translate(_without_slash(p))))
            for p in patterns
            if p not in exact
        ]

    def route_of(self, path: str) -> str | None:
        """The configured pattern that ``path`` matches (the metrics label).
        The path is normalized as routers and upstream servers do (``//search``,
        ``/x/../search``), or such a request would pass uninspected."""
        route = self.exact.get(path)  # the common case: the configured path itself
        if route is not None:
            return route
        path = _without_slash(normalize_path(path))
        route = self.exact.get(path)
        if route is not None:
            return route
        for pattern, regex in self.globs:
            if regex.match(path):
                return pattern
        return None


def _without_slash(path: str) -> str:
    return path.rstrip("/") or "/"


class DeterrenceMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings | None = None, **overrides: Any) -> None:
        self.app = app
        if settings is None:
            settings = Settings(**overrides)
        elif overrides:
            settings = Settings(**{**settings.model_dump(), **overrides})
        self.settings = settings
        self.routes = SearchRoutes(settings.search_paths)
        self.query_params = frozenset(p.casefold() for p in settings.query_params)
        self.json_keys = frozenset(k.casefold() for k in settings.json_keys)
        self.prefix = settings.prefix.rstrip("/")
        self._prefix_slash = self.prefix + "/"
        self._metrics_path = settings.metrics_path
        self._inspect_bodies = settings.inspect_bodies
        self.matcher_holder = MatcherHolder(settings)
        self.pages = WarningPages(settings)
        self.recorder = Recorder(
            settings,
            lists=self.matcher_holder.matcher.lists,
            variants=self.pages.variants,
            locales=self.pages.locales,
            services=self.pages.service_ids,
        )
        self.pages.recorder = self.recorder
        self.matcher_holder.recorder = self.recorder
        self.metrics_app = self.recorder.metrics_app
        self.prefix_routes: dict[str, ASGIApp] = {}
        self.mount("admin", AdminApp(settings, self.matcher_holder))
        if settings.redact_access_log:
            install_access_log_redaction(self._redacted_path)

    @property
    def matcher(self) -> Matcher:
        """The matcher in service (replaced whole when the lists reload)."""
        return self.matcher_holder.matcher

    def mount(self, name: str, app: ASGIApp) -> None:
        """Serve ``app`` at ``{prefix}/{name}`` (dashboard, admin …)."""
        self.prefix_routes[name] = app

    def _redacted_path(self, path: str) -> str | None:
        """How an access-log line shows ``path`` (see deterrence.logs)."""
        if path.startswith(self.prefix + "/"):
            name, slash, _ = path[len(self.prefix) + 1 :].partition("/")
            return f"{self.prefix}/{name}{'/-' if slash else ''}"
        return path if self.routes.route_of(path) is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(self._prefix_slash):
            name = path[len(self._prefix_slash) :].split("/", 1)[0]
            await self.prefix_routes.get(name, self.pages.app)(scope, receive, send)
            return
        if path == self._metrics_path:
            await self.metrics_app(scope, receive, send)
            return
        route = self._search_route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        self.recorder.inspected(route)
        if self._reads_body(scope):
            await self._inspect_body(scope, receive, send)
            return
        match, failed, oversize = self._decide(scope, None)
        if match is None and not failed and not oversize:  # the usual search: on to the app
            await self.app(scope, receive, send)
            return
        await self._act(scope, receive, send, match, failed, oversize, None)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.recorder.start()
                await self.matcher_holder.start()
            elif message["type"] == "lifespan.shutdown":
                await self.matcher_holder.stop()
                await self.recorder.stop()
            return message

        return wrapped

    def _search_route(self, scope: Scope) -> str | None:
        """The search route of a request to inspect, or None. CORS preflights
        pass uninspected (see the module docstring)."""
        route = self.routes.route_of(scope["path"])
        if route is not None and scope["method"] == "OPTIONS" and _is_preflight(scope):
            return None
        return route

    def _reads_body(self, scope: Scope) -> bool:
        """Whether to read the body: always for POST, PUT and PATCH; for other
        methods when there is one. Express's body parsers read a GET's form or JSON
        body, and search APIs take GET with JSON: a body must not hide a query."""
        if not self._inspect_bodies:
            return False
        return scope["method"] in _BODY_METHODS or _has_body(scope)

    async def _inspect_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        body, body_messages, too_large = await self._read_body(receive, headers)
        match, failed, oversize = self._decide(scope, None if body is None else (body, headers))
        if too_large and not oversize:
            oversize = CONTENT_TOO_LARGE
        replay = _replaying(body_messages, receive)
        await self._act(scope, replay, send, match, failed, oversize, headers)

    async def _act(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        match: Match | None,
        failed: bool,
        oversize: int,
        headers: Headers | None,
    ) -> None:
        """Answer an inspected request: the warning, a rejection, or the app with the
        decision. Only a ``block`` match settles a search inspected in part: a
        ``warn`` or ``count`` one would let the rest reach the app."""
        if failed and self.settings.on_error == "closed":
            await self._block(scope, receive, send, None)
            return
        if oversize and (match is None or match.action != "block"):
            mode = self.settings.on_oversize
            if mode == "reject":
                scope[REJECTED] = oversize
                await error_response(oversize)(scope, receive, send)
                return
            if mode == "closed":
                await self._block(scope, receive, send, None)
                return
        if match is None:
            await self.app(scope, receive, send)
            return
        if match.action == "block":
            await self._block(scope, receive, send, match)
            return
        variant = self.pages.choose_variant() if match.action == "warn" else NO_VARIANT
        self.recorder.intervention(
            list_id=match.list_id, category=match.category, action=match.action, variant=variant
        )
        headers = headers or Headers(scope=scope)
        decision = Decision(match.action, match, variant, self.pages, headers)
        scope.setdefault("state", {})["deterrence"] = decision
        await self.app(scope, receive, send)

    def _decide(
        self, scope: Scope, body: tuple[bytes, Headers] | None
    ) -> tuple[Match | None, bool, int]:
        """The most severe match in the request (its query string, and ``body``
        read under these headers), whether inspecting failed, and whether a text was
        too long to inspect whole: 414 when one in the query string was, 413 when
        one in the body was or the body could not be parsed, else 0.

        A request with only a query string is answered from a memo of recent
        query strings when it can be: popular searches come back byte for byte,
        and then neither decoding nor matching is needed (nor timed, so that
        ``deterrence_match_duration_seconds`` shows the matching work). The memo is keyed by
        the query string's ``hash()`` (deterrence.memo: no text is kept), belongs
        to one matcher (``Matcher.request_memo``: a reload starts a new one, and
        frees the old one off the request path), and only holds answers that
        were reached without an error or a text over the cap, so every error is
        still counted, and every over-long query answered per ``on_oversize``."""
        query_string: bytes = scope.get("query_string", b"")
        matcher = self.matcher_holder.matcher  # one list set per request, even mid-reload
        memo: Memo[Match | Unseen | None] | None = None
        if body is None:
            memo = matcher.request_memo
            found = memo.get(query_string, UNSEEN)
            if not isinstance(found, Unseen):
                return found, False, 0  # not timed: the match duration is of matching work
        texts: list[str] = []
        failed = too_deep = False
        try:
            texts.extend(extract.form_values(query_string, self.query_params))
        except Exception as exc:  # extract never raises by design; if it ever does, count it
            failed = self._decoding_failed(exc)
        in_query = len(texts)
        if body is not None:
            try:
                texts.extend(self._body_texts(*body))
            except extract.TooDeep:  # other parsers may read it: not inspected is not empty
                self.recorder.error("body_too_large")
                too_deep = True
            except Exception as exc:
                failed = self._decoding_failed(exc)
        match, match_failed, first_cut = self._match_all(matcher, texts)
        failed = failed or match_failed
        oversize = 0
        if first_cut is not None and first_cut < in_query:
            oversize = URI_TOO_LONG
        elif too_deep or first_cut is not None:
            oversize = CONTENT_TOO_LARGE
        if memo is not None and not failed and not oversize:
            memo.put(query_string, match)
        return match, failed, oversize

    def _decoding_failed(self, exc: Exception) -> bool:
        logger.error("decoding the request failed with %s", type(exc).__name__)
        self.recorder.error("decode")
        return True

    async def _block(self, scope: Scope, receive: Receive, send: Send, match: Match | None) -> None:
        variant = self.pages.choose_variant()
        if match is not None:
            self.recorder.intervention(
                list_id=match.list_id, category=match.category, action="block", variant=variant
            )
        response = self.pages.block_response(
            Headers(scope=scope),
            match,
            variant,
            self.settings.block_status,
            count_view=scope["method"] != "HEAD",  # no page was shown
        )
        await response(scope, receive, send)

    def _body_texts(self, body: bytes, headers: Headers) -> Iterator[str]:
        media, params = extract.content_type(headers.get("content-type"))
        charset = extract.charset_of(params)
        if media == _FORM:
            yield from extract.form_values(body, self.query_params, charset)
        elif media == _MULTIPART:
            yield from extract.multipart_values(
                body, params.get("boundary", ""), self.query_params, charset
            )
        elif media == "application/json" or media.endswith("+json"):
            yield from extract.json_values(body, self.json_keys, charset)

    async def _read_body(
        self, receive: Receive, headers: Headers
    ) -> tuple[bytes | None, list[Message], bool]:
        """Read the body up to the cap. Returns the body (None if too large, not of
        a type that holds a search, or the client went away), the messages read so
        far for replay, and whether it was too large."""
        media, _ = extract.content_type(headers.get("content-type"))
        if media not in (_FORM, _MULTIPART, "application/json") and not media.endswith("+json"):
            return None, [], False
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        # isascii: str.isdigit() accepts "²", which int() refuses.
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            self.recorder.error("body_too_large")
            return None, [], True
        messages: list[Message] = []
        size = 0
        chunks: list[bytes] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None, messages, False  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                self.recorder.error("body_too_large")
                return None, messages, True
            if not message.get("more_body", False):
                return b"".join(chunks), messages, False

    def passes_from_memo(self, scope: Scope) -> bool:
        """Whether ``scope`` is a search the middleware would pass on to the app
        untouched, known from the memo alone: a repeat of a query string that
        matched nothing, with no body to read. If so it is counted as inspected,
        as in ``__call__``, and the caller answers for the app. The decision
        service does this to skip the machinery of a full pass."""
        route = self._search_route(scope)
        if route is None or self._reads_body(scope):
            return False
        memo = self.matcher_holder.matcher.request_memo
        if memo.get(scope.get("query_string", b""), UNSEEN) is not None:
            return False
        self.recorder.inspected(route)
        return True

    def _match_all(
        self, matcher: Matcher, texts: list[str]
    ) -> tuple[Match | None, bool, int | None]:
        """The most severe match over every inspected text, whether matching
        failed (an exception, counted; see ``settings.on_error``), and the index
        of the first text longer than ``max_query_chars`` (matched up to it,
        counted), or None."""
        best: Match | None = None
        failed = False
        first_cut: int | None = None
        limit = self.settings.max_query_chars
        started = time.perf_counter()
        for index, text in enumerate(texts):
            if len(text) > limit:
                self.recorder.error("query_too_long")
                text = text[:limit]
                if first_cut is None:
                    first_cut = index
            try:
                match = matcher.match(text)
            except Exception as exc:
                # The exception's type only: its message could quote the query.
                logger.error(
                    "matching failed with %s; on_error=%s",
                    type(exc).__name__,
                    self.settings.on_error,
                )
                self.recorder.error("match_exception")
                failed = True
                continue
            if match is not None and (
                best is None or SEVERITY[match.action] > SEVERITY[best.action]
            ):
                best = match
        self.recorder.observe_match(time.perf_counter() - started)
        return best, failed, first_cut


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name in _FRAMING_HEADERS and value.strip() != b"0":
            return True
    return False


def _is_preflight(scope: Scope) -> bool:
    """A CORS preflight: ``Origin`` and ``Access-Control-Request-Method`` (Fetch §3.2.2)."""
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive that first returns the messages already read, then the rest."""
    if not messages:
        return receive
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
