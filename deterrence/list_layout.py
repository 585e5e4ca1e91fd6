"""Where the terms of a TOML list file lie, line by line, in the plain shape that
lists are kept in: ``terms = [`` on a line of its own at the top, one entry a line
(a string without escapes, or an inline table), and ``]`` on a line of its own.

Knowing it, a parse gives each term its own line without an index of every quoted
string in the file, and a file that was edited by appending terms is read again
only where it changed: its appended lines, and what lies outside the array. A
warm build process parsed a whole 5,000-term list again for each term added
(16-19 ms of CPU under bench.soak's load, on a machine whose cores the requests
needed right then); deterrence.lists reads it on top of the last parse.

Anything else has no layout, and is read whole: a multi-line string or a table
header before the terms, an entry over several lines or two on one, a string
with escapes. This module only finds lines; TOML is read by tomli, here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["AppendedLines", "Layout"]

_OPEN = re.compile(r"^terms[ \t]*=[ \t]*\[[ \t]*(?:#[^\n]*)?\r?\n", re.MULTILINE)
_NOT_PLAIN_BEFORE = re.compile(r"^[ \t]*\[|\"\"\"|'''", re.MULTILINE)
"""Before the array, a table header or an array of tables (``terms = [`` would be
inside it), or a multi-line string (it could be inside that)."""
_STRING = r'"[^"\\\n]*"'
_LINE = (
    rf"[ \t]*+(?:(?:{_STRING}|\{{(?:[^{{}}\[\]\"'#\n]|{_STRING})*+\}})[ \t]*+(?P<comma>,)?[ \t]*+)?"
    r"(?:#[^\n]*)?"
)
"""One entry, or none (a blank or comment line): nothing a line leaves open.
Possessive quantifiers: a line that does not match fails at once, not after
trying every split of its spaces."""
_ENTRY_LINE = re.compile(_LINE)
_PLAIN_LINES = re.compile(rf"(?:{_LINE}\r?\n)*+")
_CLOSE = re.compile(r"^[ \t]*+\][ \t]*+(?:#[^\n]*)?\r?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Layout:
    """A file's terms array: its ``body`` (the lines between ``terms = [`` and
    ``]``), the line numbers of the body's first line and of the closing ``]``,
    and whether an entry may be appended to the body as it is (its last entry
    has its comma, or it has none)."""

    body: str
    first_line: int
    closing_line: int
    open: bool

    @classmethod
    def of(cls, text: str) -> tuple[Layout, tuple[int, ...]] | None:
        """The layout of ``text``, and the line of each entry in its array, when
        the file has the plain shape; else None. Only a parse of the whole file
        by tomli tells whether the array is TOML: check the entries' count."""
        body_start = _body_start(text)
        if body_start is None:
            return None
        start, first_line = body_start
        found = _plain_lines(text, start, first_line)
        if found is None:
            return None
        end, lines, last_comma = found
        body = text[start:end]
        closing_line = first_line + body.count("\n")
        return cls(body, first_line, closing_line, last_comma or not lines), lines

    def appended(self, text: str) -> AppendedLines | None:
        """``text`` against this layout, when its array is this one's with lines
        appended, at the same line of the file (what lies outside the array may
        differ: ``AppendedLines.outside`` is to be read again). Whether the
        appended lines are TOML, only tomli tells."""
        body_start = _body_start(text)
        if body_start is None or body_start[1] != self.first_line:
            return None
        start = body_start[0]
        if not text.startswith(self.body, start):
            return None
        after = start + len(self.body)
        found = _plain_lines(text, after, self.closing_line)
        if found is None:
            return None
        end, lines, last_comma = found
        if lines and not self.open:
            return None
        appended = text[after:end]
        layout = Layout(
            text[start:end],
            self.first_line,
            self.closing_line + appended.count("\n"),
            last_comma if lines else self.open,
        )
        return AppendedLines(
            layout, outside=text[:start] + text[end:], lines=appended, entry_lines=lines
        )


@dataclass(frozen=True, slots=True)
class AppendedLines:
    """A file whose array is an earlier layout's with lines appended."""

    layout: Layout
    outside: str
    """The file with its array emptied: ``terms = [`` and ``]`` with nothing between."""
    lines: str
    """The appended lines: the body of an array in themselves."""
    entry_lines: tuple[int, ...]
    """The line of each entry in ``lines``."""


def _body_start(text: str) -> tuple[int, int] | None:
    """Where the lines of the top-level terms array begin, and at which line,
    when ``terms = [`` ends a line of its own with only plain lines before it."""
    found = _OPEN.search(text)
    if found is None or _NOT_PLAIN_BEFORE.search(text, 0, found.start()):
        return None
    return found.end(), text.count("\n", 0, found.end()) + 1


def _plain_lines(text: str, start: int, line: int) -> tuple[int, tuple[int, ...], bool] | None:
    """From ``start`` (at line ``line``) to the array's closing line, when every
    line on the way is one entry or none: where the closing line begins, the line
    of each entry, and whether the last one has its comma."""
    close = _CLOSE.search(text, start)
    if close is None or _PLAIN_LINES.fullmatch(text, start, close.start()) is None:
        return None
    body = text[start : close.start()].split("\n")[:-1]  # each ends with a newline
    entries = [number for number, entry in enumerate(body) if entry.lstrip(" \t")[:1] in ('"', "{")]
    last_comma = bool(entries) and _has_comma(body[entries[-1]])
    return close.start(), tuple(line + number for number in entries), last_comma


def _has_comma(entry_line: str) -> bool:
    found = _ENTRY_LINE.fullmatch(entry_line.removesuffix("\r"))
    return found is not None and found["comma"] is not None
