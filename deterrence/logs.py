"""Access-log redaction (DESIGN §6).

Servers log every request line, query string and client address included. For
the requests deterrence inspects, that line would store the search and who made
it, so the middleware installs a filter on the access loggers of uvicorn and
gunicorn itself — it works under plain ``uvicorn app:app`` and gunicorn too, not
only under the ``deterrence`` commands. The filter rewrites the record: query
string, client address, user agent, referrer and header fields become ``-``;
method, path and status stay, so the log is still useful for operations.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
REDACTED = "-"


class AccessLogRedaction(logging.Filter):
    def __init__(self) -> None:
        super().__init__("deterrence-redaction")
        self._predicates: list[weakref.WeakMethod[Callable[[str], bool]]] = []

    def add(self, predicate: Callable[[str], bool]) -> None:
        self._predicates.append(weakref.WeakMethod(predicate))

    def _redacts(self, path: str) -> bool:
        path = unquote(path.split("?", 1)[0])
        for reference in self._predicates:
            predicate = reference()
            if predicate is not None and predicate(path):
                return True
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            # uvicorn: '%s - "%s %s HTTP/%s" %d' (client, method, path?query, version, status)
            _client, method, target, version, status = args
            if isinstance(target, str) and self._redacts(target):
                record.args = (REDACTED, method, _strip_query(target), version, status)
        elif isinstance(args, dict) and isinstance(args.get("U"), str) and self._redacts(args["U"]):
            # gunicorn: a dict of atoms for access_log_format
            record.args = _redact_gunicorn_atoms(args)
        return True


def _strip_query(target: str) -> str:
    path, question, _ = target.partition("?")
    return f"{path}?{REDACTED}" if question else path


def _redact_gunicorn_atoms(atoms: dict[str, Any]) -> dict[str, Any]:
    redacted = dict(atoms)
    for key in ("h", "a", "f", "q", "u", "l"):
        if key in redacted:
            redacted[key] = REDACTED
    if isinstance(redacted.get("r"), str):
        method, _, rest = redacted["r"].partition(" ")
        target, _, protocol = rest.partition(" ")
        redacted["r"] = f"{method} {_strip_query(target)} {protocol}".strip()
    for key in list(redacted):
        if key.startswith("{") and (key.endswith("}i") or key.endswith("}e")):
            redacted[key] = REDACTED
    return redacted


_redaction = AccessLogRedaction()


def install_access_log_redaction(predicate: Callable[[str], bool]) -> None:
    """Redact access-log lines whose path satisfies ``predicate`` (a bound method)."""
    _redaction.add(predicate)
    for name in ACCESS_LOGGERS:
        access_logger = logging.getLogger(name)
        if _redaction not in access_logger.filters:
            access_logger.addFilter(_redaction)
