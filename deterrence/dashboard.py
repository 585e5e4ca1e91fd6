"""The embedded dashboard: one server-rendered page at ``{prefix}/dashboard``.

It shows a live :class:`~deterrence.report.Report` (no noise, counts below
``min_count`` suppressed) over the last day, week, month or quarter, plus the
status of the term lists and the errors by kind. Charts are inline SVG; the page
runs no script and loads nothing, not even from its own origin.

Access: with ``dashboard_token`` set, an ``Authorization: Bearer <token>``
header; with ``dashboard_user`` and ``dashboard_password``, HTTP Basic (the
browser asks). Credentials are never accepted in the URL, where they would end
up in logs and browser history. Without either, the dashboard is open — and so
it must only be reachable from the machine itself: :func:`check_exposure`
refuses a non-loopback bind address (the commands call it before serving), and
each request from a non-loopback client is refused as well.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from deterrence.headers import privacy_headers, raw_headers
from deterrence.metrics import ERROR_KINDS, ERRORS, Recorder
from deterrence.report import (
    Report,
    build_report,
    report_charts,
    sparklines,
    stylesheet,
    template_environment,
)
from deterrence.settings import Settings
from deterrence.store import ListStatus, Store

RANGES: dict[str, tuple[str, timedelta]] = {
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
    "90d": ("last 90 days", timedelta(days=90)),
}
DEFAULT_RANGE = "7d"
REALM = "deterrence dashboard"


class DashboardExposureError(RuntimeError):
    """The dashboard would be reachable from other machines without credentials."""


def has_credentials(settings: Settings) -> bool:
    return settings.dashboard_token is not None or (
        settings.dashboard_user is not None and settings.dashboard_password is not None
    )


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: Settings) -> None:
    """Raise :class:`DashboardExposureError` if serving on ``host`` would expose an
    unprotected dashboard. Call it with the bind address before starting a server."""
    if has_credentials(settings) or is_loopback(host):
        return
    raise DashboardExposureError(
        f"refusing to serve the dashboard on {host} without credentials: set "
        "DETERRENCE_DASHBOARD_TOKEN (or DETERRENCE_DASHBOARD_USER and "
        "DETERRENCE_DASHBOARD_PASSWORD), or bind to 127.0.0.1"
    )


def security_headers(content_security_policy: str) -> list[tuple[bytes, bytes]]:
    """The §6 headers the warning page sends, for the dashboard too."""
    return raw_headers(privacy_headers(content_security_policy))


Access = Literal["ok", "unauthorised", "not_local"]


class Dashboard:
    """ASGI app for the dashboard page; mount it at ``{settings.prefix}/dashboard``.

    ``recorder`` (optional) is flushed before each view, so this process's latest
    counts are included; ``store`` defaults to the one in ``settings.data_dir``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        recorder: Recorder | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.store = store or (recorder.store if recorder else None) or Store(settings.data_dir)
        self.path = settings.prefix.rstrip("/") + "/dashboard"
        self._css, css_hash = stylesheet()
        self._csp = (
            f"default-src 'none'; style-src 'sha256-{css_hash}'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        self._environment = template_environment()

    # --- access ----------------------------------------------------------------

    def access(self, scope: Scope) -> Access:
        settings = self.settings
        if not has_credentials(settings):
            client = scope.get("client")
            return "ok" if client and is_loopback(client[0]) else "not_local"
        authorization = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and settings.dashboard_token is not None:
            expected = settings.dashboard_token.get_secret_value().encode()
            if hmac.compare_digest(credentials.strip().encode(), expected):
                return "ok"
        if (
            scheme == "basic"
            and settings.dashboard_user is not None
            and settings.dashboard_password is not None
        ):
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                return "unauthorised"
            user, _, password = decoded.partition(b":")
            user_ok = hmac.compare_digest(user, settings.dashboard_user.encode())
            password_ok = hmac.compare_digest(
                password, settings.dashboard_password.get_secret_value().encode()
            )
            if user_ok and password_ok:
                return "ok"
        return "unauthorised"

    # --- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        if path.rstrip("/") not in ("", self.path):
            await self._text(send, 404, "not found")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self._text(send, 405, "method not allowed", [(b"allow", b"GET, HEAD")])
            return
        access = self.access(scope)
        if access == "not_local":
            await self._text(
                send,
                403,
                "The dashboard has no credentials configured and only answers local "
                "requests. Set DETERRENCE_DASHBOARD_TOKEN or DETERRENCE_DASHBOARD_USER and "
                "DETERRENCE_DASHBOARD_PASSWORD.",
            )
            return
        if access == "unauthorised":
            challenges = []
            if self.settings.dashboard_user is not None:
                challenges.append((b"www-authenticate", f'Basic realm="{REALM}"'.encode()))
            if self.settings.dashboard_token is not None:
                challenges.append((b"www-authenticate", f'Bearer realm="{REALM}"'.encode()))
            await self._text(send, 401, "authentication required", challenges)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        range_key = query.get("range", [DEFAULT_RANGE])[0]
        if range_key not in RANGES:
            range_key = DEFAULT_RANGE
        html = await asyncio.to_thread(self.render, range_key)
        body = html.encode("utf-8")
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *security_headers(self._csp),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _text(
        self, send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        body = (text + "\n").encode("utf-8")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *security_headers("default-src 'none'"),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- rendering -----------------------------------------------------------------

    def build(self, range_key: str, *, now: datetime | None = None) -> tuple[Report, ListStatus]:
        if self.recorder is not None:
            self.recorder.flush()
        now = now or datetime.now(UTC)
        _, span = RANGES[range_key]
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        report = build_report(
            self.store,
            start=end - span,
            end=end,
            period="hour"
            if span <= timedelta(days=1)
            else "week"
            if span > timedelta(days=60)
            else "day",
            min_count=self.settings.min_count,
        )
        return report, self.store.list_status()

    def errors(self, report: Report) -> list[tuple[str, int | None]]:
        sums: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        for row in self.store.counts(ERRORS, start=report.start, end=report.end):
            kind = row.labels.get("kind", "other")
            sums[kind] = sums.get(kind, 0) + row.value
        k = self.settings.min_count
        return [(kind, n if n >= k else None) for kind, n in sums.items() if n > 0]

    def render(self, range_key: str, *, now: datetime | None = None) -> str:
        report, status = self.build(range_key, now=now)
        return self._environment.get_template("dashboard.html").render(
            report=report,
            status=status,
            errors=self.errors(report),
            charts=report_charts(report),
            sparks=sparklines(report),
            css=self._css,
            ranges={key: label for key, (label, _) in RANGES.items()},
            range_key=range_key,
            generated=now or datetime.now(UTC),
        )
