"""Access-log redaction (DESIGN §6).

Servers log every request line, query string and client address included. For
the requests deterrence inspects, that line would store the search and who made
it, so the middleware installs a filter on the access loggers of uvicorn and
gunicorn itself — it works under plain ``uvicorn app:app`` and gunicorn too, not
only under the ``deterrence`` commands. The filter rewrites the record: query
string, user agent, referrer and header fields become ``-``; deterrence's own
routes keep only their route name (``/_deterrence/go/-``), since the rest of
their path is whatever the client sent. Method, path and status stay, so the log
is still useful for operations. The client address is removed from *every*
access line while redaction is on (``redact_access_log``, the default): no
IP address is stored, for searches or otherwise.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
Redactor = Callable[[str], "str | None"]
"""Given a request path, the path to log in its place, or None if not ours."""
REDACTED = "-"


class AccessLogRedaction(logging.Filter):
    def __init__(self) -> None:
        super().__init__("deterrence-redaction")
        self._redactors: list[weakref.WeakMethod[Redactor]] = []

    def add(self, redactor: Redactor) -> None:
        self._redactors.append(weakref.WeakMethod(redactor))

    def _redact(self, target: str) -> str | None:
        """The target to log instead of ``target``, or None when it is not ours."""
        path, question, _ = target.partition("?")
        for reference in self._redactors:
            redactor = reference()
            logged = redactor(unquote(path)) if redactor is not None else None
            if logged is not None:
                return f"{logged}?{REDACTED}" if question else logged
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            # uvicorn: '%s - "%s %s HTTP/%s" %d' (client, method, path?query, version, status)
            _client, method, target, version, status = args
            logged = self._redact(target) if isinstance(target, str) else None
            record.args = (REDACTED, method, logged or target, version, status)
        elif isinstance(args, dict) and isinstance(args.get("U"), str):
            # gunicorn: a dict of atoms for access_log_format
            record.args = _redact_gunicorn_atoms(args, self._redact(args["U"]))
        return True


def _redact_gunicorn_atoms(atoms: dict[str, Any], logged: str | None) -> dict[str, Any]:
    redacted = dict(atoms)
    for key in ("h", "a", "f", "u", "l"):
        if key in redacted:
            redacted[key] = REDACTED
    for key in list(redacted):
        if key.startswith("{") and (key.endswith("}i") or key.endswith("}e")):
            redacted[key] = REDACTED
    if logged is not None:
        path = logged.partition("?")[0]
        redacted["q"] = REDACTED
        redacted["U"] = path
        if isinstance(redacted.get("r"), str):
            method, _, rest = redacted["r"].partition(" ")
            _target, _, protocol = rest.partition(" ")
            redacted["r"] = f"{method} {logged} {protocol}".strip()
    return redacted


_redaction = AccessLogRedaction()


def install_access_log_redaction(redactor: Redactor) -> None:
    """Redact access-log lines: client addresses always, and the query of the
    paths ``redactor`` (a bound method) claims, logged as the path it returns."""
    _redaction.add(redactor)
    for name in ACCESS_LOGGERS:
        access_logger = logging.getLogger(name)
        if _redaction not in access_logger.filters:
            access_logger.addFilter(_redaction)
