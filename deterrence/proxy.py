"""A streaming reverse proxy as a pure ASGI app, for sites that are not written in
Python: ``deterrence proxy`` serves ``DeterrenceMiddleware(ProxyApp(upstream), settings)``,
so searches are inspected by the middleware and everything else is forwarded untouched.

What the proxy does to a request on its way to the upstream:

* Hop-by-hop headers (``Connection`` and every header it names, ``Keep-Alive``,
  ``Proxy-Authenticate``, ``Proxy-Authorization``, ``Proxy-Connection``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) are removed, in both directions:
  they describe one connection, not the message.
* ``X-Forwarded-For``, ``-Proto`` and ``-Host`` are set. A client can write any
  header it likes, so incoming ``X-Forwarded-*`` and ``Forwarded`` headers are only
  believed when the connection comes from an address in ``trusted_proxies`` (addresses
  or CIDR networks, ``"*"`` for any): then the client address is appended to the
  incoming ``X-Forwarded-For`` and the incoming proto and host are kept. Otherwise
  they are dropped and replaced by what this connection says.
* ``Host`` becomes the upstream's own (like nginx's default), unless
  ``preserve_host``; the public host travels in ``X-Forwarded-Host``.
* Bodies stream both ways with back-pressure: nothing is buffered whole, and
  ``Content-Encoding`` passes through untouched (the upstream client never decodes).
* There is no cookie jar: one client's cookies can never reach another's requests.
* A match of a ``warn`` list adds ``Deterrence-Action: warn`` to the request (the
  site can show a banner); a client's own ``Deterrence-Action`` is dropped.

When the upstream cannot be reached the client gets a small 502 page, when it is too
slow a 504 page (never a traceback), each counted through the optional recorder as
``upstream_connect``, ``upstream_timeout`` or ``upstream_reset``. An upstream failure
after the response has started can only be signalled by cutting the connection short,
so the client sees an incomplete response rather than a truncated one that looks whole.

The HTTP client is the proxy's own (``deterrence.upstream``): one origin and requests
already parsed need little of a general client, whose per-request work was half of the
proxy's CPU (docs/proxy.md).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit

from starlette.types import Message, Receive, Scope, Send

from deterrence.middleware import decision_of
from deterrence.pages import error_response
from deterrence.upstream import UpstreamError, UpstreamPool

if TYPE_CHECKING:
    from deterrence.settings import Settings

__all__ = ["HOP_BY_HOP_HEADERS", "ErrorRecorder", "ProxyApp", "TrustedProxies"]

logger = logging.getLogger("deterrence.proxy")

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers the proxy sets itself, or that only make sense between the client
# and this server (uvicorn answers ``Expect: 100-continue`` when the body is read).
# ``Deterrence-Action`` tells the site about a ``warn`` match: only the proxy says so.
_REPLACED_REQUEST_HEADERS = frozenset({"host", "expect", "deterrence-action"})
_DROPPED_REQUEST_HEADERS = HOP_BY_HOP_HEADERS | _REPLACED_REQUEST_HEADERS
_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP_HEADERS)
_FORWARDED_PREFIX = "x-forwarded-"
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_NOT_URL_SAFE = re.compile(rb"[^\x21-\x7e]")


class ErrorRecorder(Protocol):
    """The part of ``deterrence.metrics.Recorder`` the proxy needs."""

    def error(self, kind: str) -> None: ...


class TrustedProxies:
    """Addresses whose ``X-Forwarded-*`` headers are believed: exact addresses, CIDR
    networks (``10.0.0.0/8``, ``::1/128``) or ``"*"`` for every client."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.trust_all = False
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._seen: dict[str, bool] = {}
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.trust_all = True
            elif entry:
                self._networks.append(ipaddress.ip_network(entry, strict=False))

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False  # unix sockets and unknown peers
        if self.trust_all:
            return True
        known = self._seen.get(host)
        if known is None:
            known = self._check(host)
            if len(self._seen) >= 4096:  # bounded: addresses are client-controlled
                self._seen.clear()
            self._seen[host] = known
        return known

    def _check(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


class _ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class ProxyApp:
    """Forward every HTTP request to ``upstream`` (``http://host:port[/base]``)."""

    def __init__(
        self,
        upstream: str,
        *,
        trusted_proxies: Sequence[str] = ("127.0.0.1",),
        preserve_host: bool = False,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = 60.0,
        write_timeout: float | None = 60.0,
        pool_timeout: float | None = 5.0,
        max_connections: int = 100,
        recorder: ErrorRecorder | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http:// or https:// URL, not {upstream!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"upstream must not have a query or fragment: {upstream!r}")
        self.upstream = upstream
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._upstream_host = parts.netloc.rpartition("@")[2]
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.preserve_host = preserve_host
        # A closed pool (after shutdown) is replaced by a new one of the same kind.
        self._new_pool = partial(
            UpstreamPool,
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            tls=parts.scheme == "https",
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            pool_timeout=pool_timeout,
        )
        self.recorder = recorder
        self._pool: UpstreamPool | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        upstream: str | None = None,
        *,
        recorder: ErrorRecorder | None = None,
    ) -> ProxyApp:
        target = upstream or settings.upstream
        if not target:
            raise ValueError("no upstream: pass --upstream or set DETERRENCE_UPSTREAM")
        return cls(
            target,
            trusted_proxies=settings.trusted_proxies,
            preserve_host=settings.upstream_preserve_host,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            write_timeout=settings.upstream_write_timeout,
            pool_timeout=settings.upstream_pool_timeout,
            max_connections=settings.upstream_max_connections,
            recorder=recorder,
        )

    # --- connection pool -------------------------------------------------------

    async def startup(self) -> None:
        """Open the connection pool (also done lazily by the first request, for
        servers that do not send lifespan events)."""
        self._get_pool()

    async def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _get_pool(self) -> UpstreamPool:
        if self._pool is None or self._pool.closed:
            self._pool = self._new_pool()
        return self._pool

    # --- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            # Not proxied: closing before accept makes the server answer 403.
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        pool = self._get_pool()
        headers, has_body, chunked = self._request_headers(scope)
        method: str = scope["method"]
        lines = [f"{method} {self._target(scope)} HTTP/1.1", *[f"{n}: {v}" for n, v in headers]]
        head = "\r\n".join([*lines, "", ""]).encode("latin-1")
        try:
            response = await pool.request(
                head,
                _request_body(receive) if has_body else None,
                chunked=chunked,
                head_only=method == "HEAD",
                idempotent=method in _IDEMPOTENT,
            )
        except _ClientGone:
            return  # nobody is left to answer
        except UpstreamError as exc:  # every failure becomes a page, never a traceback
            await self._fail(scope, receive, send, exc.kind)
            return

        completed = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": self._response_headers(response.headers),
                }
            )
            async for chunk, more in response.body():
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            completed = True
        except UpstreamError as exc:
            # The upstream failed mid-body: end without completing the response, so the
            # server cuts the connection and the client knows the body is incomplete.
            self._record(exc.kind)
            logger.warning("upstream failed during the response body (%s)", exc.kind)
        except OSError:
            pass  # the client went away
        finally:
            if completed:
                response.release()
            else:
                response.close()  # a connection is not reused half-way (or when cancelled)

    # --- helpers -----------------------------------------------------------------

    def _target(self, scope: Scope) -> str:
        """The request target for the upstream: its base path, then the path and
        query as the client sent them (made URL-safe)."""
        raw_path: bytes | None = scope.get("raw_path")
        path = _safe_ascii(raw_path) if raw_path else quote(scope["path"], safe="/%;@!$&'()*+,=:~")
        target = self._base_path + path
        query: bytes = scope.get("query_string", b"")
        if query:
            target += "?" + _safe_ascii(query)
        return target

    def _request_headers(self, scope: Scope) -> tuple[list[tuple[str, str]], bool, bool]:
        """The headers for the upstream (lower-case names, Host first), whether
        the request has a body, and whether it goes chunked (no Content-Length)."""
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        client = scope.get("client")
        client_host: str | None = client[0] if client else None
        trusted = client_host in self.trusted_proxies
        tokens = _connection_tokens(raw)
        dropped = _DROPPED_REQUEST_HEADERS | tokens if tokens else _DROPPED_REQUEST_HEADERS

        passed: list[tuple[str, str]] = []
        incoming_for: list[str] = []
        incoming_proto = incoming_host = None
        public_host = None
        has_body = has_length = False
        for key, value in raw:
            name = key.decode("latin-1").lower()
            text = value.decode("latin-1")
            if name == "host":
                public_host = text
            elif name == "content-length":
                has_body = text.strip() != "0"
            elif name == "transfer-encoding":
                has_body = True
            if name in dropped:
                continue
            if name.startswith(_FORWARDED_PREFIX) or name == "forwarded":
                if not trusted:
                    continue
                if name == "x-forwarded-for":
                    incoming_for.append(text)
                    continue
                if name == "x-forwarded-proto":
                    incoming_proto = text
                    continue
                if name == "x-forwarded-host":
                    incoming_host = text
                    continue
            passed.append((name, text))
            has_length = has_length or name == "content-length"  # forwarded, so it frames

        host = public_host if self.preserve_host and public_host else self._upstream_host
        headers = [("host", host), *passed]
        if client_host is not None:
            headers.append(("x-forwarded-for", ", ".join([*incoming_for, client_host])))
        elif incoming_for:
            headers.append(("x-forwarded-for", ", ".join(incoming_for)))
        headers.append(("x-forwarded-proto", incoming_proto or scope.get("scheme", "http")))
        forwarded_host = incoming_host or public_host
        if forwarded_host:
            headers.append(("x-forwarded-host", forwarded_host))
        decision = decision_of(scope)
        if decision is not None and decision.action == "warn":
            headers.append(("deterrence-action", "warn"))  # the site may show a banner
        chunked = has_body and not has_length
        if chunked:
            headers.append(("transfer-encoding", "chunked"))
        return headers, has_body, chunked

    def _response_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        raw = list(raw)
        tokens = _connection_tokens(raw)
        dropped = _HOP_BY_HOP_BYTES | {t.encode("latin-1") for t in tokens}
        headers: list[tuple[bytes, bytes]] = []
        for key, value in raw:
            name = key.lower()
            if name in dropped:
                continue
            if name == b"location":
                value = self._public_location(value)
            headers.append((name, value))
        return headers

    def _public_location(self, value: bytes) -> bytes:
        """A redirect to the upstream's own address becomes a path on this server (the
        upstream does not know the public address; nginx's ``proxy_redirect default``)."""
        base = (self._origin + self._base_path).encode("latin-1")
        if value.startswith(base) and value[len(base) : len(base) + 1] in (b"", b"/", b"?"):
            rest = value[len(base) :]
            return rest if rest.startswith(b"/") else b"/" + rest
        return value

    def _record(self, kind: str) -> None:
        if self.recorder is not None:
            try:
                self.recorder.error(kind)
            except Exception:  # counting must never break a response
                logger.exception("could not count error %s", kind)

    async def _fail(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        status = 504 if kind == "upstream_timeout" else 502
        self._record(kind)
        logger.warning("upstream %s: answered %d", kind, status)
        await error_response(status)(scope, receive, send)


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _connection_tokens(raw: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
    """Header names listed in ``Connection`` (they are hop-by-hop too, RFC 9110 §7.6.1)."""
    tokens: set[str] = set()
    for key, value in raw:
        if key.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    tokens.discard("")
    return frozenset(tokens)


def _safe_ascii(raw: bytes) -> str:
    """The request target as the client sent it, with anything that may not appear in a
    URL (non-ASCII bytes, controls) percent-encoded; existing escapes are kept as they are."""
    if _NOT_URL_SAFE.search(raw) is None:
        return raw.decode("ascii")
    return quote(raw, safe="/?#[]@!$&'()*+,;=:%~")
