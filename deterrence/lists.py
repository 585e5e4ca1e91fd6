"""Term list files (DESIGN §3): load, validate and report errors.

Loading is all or nothing: every problem in every file is collected, and one
:class:`ListError` names them all with file and line, so a broken edit never
replaces a working list set.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast, get_args, overload

import tomli

from deterrence.list_layout import Layout
from deterrence.text import canonicalize

Action = Literal["block", "warn", "count"]
ACTIONS: tuple[Action, ...] = get_args(Action)
SEVERITY: dict[str, int] = {"block": 3, "warn": 2, "count": 1}
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
LIST_SUFFIXES = (".toml", ".txt")

_LIST_KEYS = {
    "id", "category", "action", "name", "version", "source", "languages", "fuzzy",
    "terms", "allow", "rules", "tests",
}  # fmt: skip
_TERM_KEYS = {"term", "fuzzy", "substring"}
_RULE_KEYS = {"id", "all_of"}
_TESTS_KEYS = {"match", "no_match"}
_QUOTED = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
"""A double-quoted string, its loop unrolled: twice as fast as ``"(?:[^"\\]|\\.)*"``."""
_ProblemOf = Callable[[str], str | None]  # what is wrong with a term, if anything


class ListError(ValueError):
    """One or more list files are invalid. ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class Term(NamedTuple):
    """One term of a list."""

    text: str
    fuzzy: bool
    substring: bool = False
    line: int | None = None


_Row = tuple[str, bool, bool, int | None]
"""A term as a plain tuple: :class:`Term`'s fields."""


class Terms(Sequence[Term]):
    """A list's terms, kept as plain tuples and handed out as :class:`Term`.

    The cycle collector stops tracking a tuple of plain values, but only an
    exact tuple: every ``Term`` (a tuple subclass) stays tracked, and 100,000 of
    them were 100,000 objects for each full collection to walk (162 ms at
    100,000 terms, and a reload sets one off). Kept here, they are one object
    for it once the first collection has seen them."""

    __slots__ = ("_rows",)

    def __init__(self, terms: Iterable[Term] = ()) -> None:
        # An exact tuple of a Term's fields: what _Row says, which mypy cannot see.
        self._rows = cast(tuple[_Row, ...], tuple(map(tuple, terms)))

    @classmethod
    def _of_rows(cls, rows: Iterable[_Row]) -> Terms:
        """From plain tuples, as a parse makes them: no ``Term`` made and dropped."""
        terms = cls.__new__(cls)
        terms._rows = tuple(rows)
        return terms

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Term: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Term, ...]: ...

    def __getitem__(self, index: int | slice) -> Term | tuple[Term, ...]:
        if isinstance(index, slice):
            return tuple(map(Term._make, self._rows[index]))
        return Term._make(self._rows[index])

    def __iter__(self) -> Iterator[Term]:
        return map(Term._make, self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Terms):
            return self._rows == other._rows
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._rows)

    def beyond(self, older: Sequence[Term]) -> list[Term] | None:
        """The terms these have besides ``older``'s (in this order), when these are
        ``older`` with terms added; None when a term of ``older`` is gone or changed.
        Line numbers do not count.

        When these are ``older`` with terms appended, they keep ``older``'s rows
        from then on, equal to their own: a reload's freshly read rows (5,000 terms:
        5,000 tuples) would each be walked by the cycle collector's next young
        collection, in one hold of the interpreter lock, while ``older``'s were
        untracked long ago."""
        rows = older._rows if isinstance(older, Terms) else Terms(older)._rows
        appended = self._after(rows)
        if appended is not None:  # appended: the usual edit
            if isinstance(older, Terms):
                self._rows = older._rows + appended
            return [Term._make(row) for row in appended]
        left = Counter(row[:3] for row in rows)
        added: list[Term] = []
        for row in self._rows:
            if left[row[:3]] > 0:
                left[row[:3]] -= 1
            else:
                added.append(Term._make(row))
        return None if any(n > 0 for n in left.values()) else added

    def _after(self, rows: tuple[_Row, ...]) -> tuple[_Row, ...] | None:
        """The rows these have after ``rows``, when they begin with them."""
        if self._rows[: len(rows)] != rows:
            return None
        return self._rows[len(rows) :]

    def __repr__(self) -> str:
        return f"Terms({list(self)!r})"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    all_of: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class TermList:
    id: str
    category: str
    action: Action = "block"
    name: str | None = None
    version: str | None = None
    source: str | None = None
    languages: tuple[str, ...] = ()
    fuzzy: bool = True
    terms: Sequence[Term] = Terms()
    """Any sequence of terms given here is kept as :class:`Terms`."""
    allow: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    tests_match: tuple[str, ...] = ()
    tests_no_match: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.terms, Terms):
            object.__setattr__(self, "terms", Terms(self.terms))


def list_files(path: Path) -> list[Path]:
    """The list files a path names: the file itself, or a directory's lists."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in LIST_SUFFIXES and p.is_file())
    return [path]


def load_lists(
    paths: Iterable[str | Path], load: Callable[[Path], TermList] | None = None
) -> tuple[TermList, ...]:
    """Load every list under ``paths`` (each file with ``load``, by default
    :func:`load_file`); raise :class:`ListError` on any problem."""
    load = load or load_file
    problems: list[str] = []
    lists: list[TermList] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(f"{path}: no such file or directory")
            continue
        files = list_files(path)
        if path.is_dir() and not files:
            problems.append(f"{path}: directory holds no *.toml or *.txt list")
        for file in files:
            try:
                lists.append(load(file))
            except ListError as exc:
                problems.extend(exc.problems)
    seen: dict[str, Path | None] = {}
    for term_list in lists:
        if term_list.id in seen:
            problems.append(
                f"{term_list.path}: duplicate list id {term_list.id!r} "
                f"(also in {seen[term_list.id]})"
            )
        seen[term_list.id] = term_list.path
    if problems:
        raise ListError(problems)
    return tuple(lists)


def load_file(path: Path) -> TermList:
    return _parse(path, _read(path), _term_problem)[0]


@dataclass(frozen=True, slots=True)
class Appended:
    """A list as it differs from an earlier parse of its file: that parse's terms
    and then ``rows``; ``header`` holds the rest (its own terms empty)."""

    header: TermList
    rows: tuple[_Row, ...]

    @classmethod
    def between(cls, older: TermList, newer: TermList) -> Appended | None:
        """``newer`` against ``older``, when its terms are ``older``'s with terms
        appended (line numbers included: the usual edit keeps them)."""
        old, new = older.terms, newer.terms
        if not isinstance(old, Terms) or not isinstance(new, Terms):
            return None
        rows = new._after(old._rows)
        return None if rows is None else cls(replace(newer, terms=Terms()), rows)

    def onto(self, older: TermList) -> TermList:
        """The list this stands for, given the parse it was made against; its
        terms share that parse's rows."""
        rows = cast(Terms, older.terms)._rows + self.rows
        return replace(self.header, terms=Terms._of_rows(rows))


Change = tuple[str, str, "TermList | Appended | None"]
"""A list file as :meth:`ParsedFiles.load_changes` gives it: its path, the sha256 of
its content (hex), and its list: whole, :class:`Appended` to the parse the receiver
holds, or None when it is that parse."""


class _Parsed(NamedTuple):
    digest: str
    """The sha256 of the file (hex)."""
    term_list: TermList
    layout: Layout | None
    """Where its terms lie (deterrence.list_layout), when it has the plain shape."""


class ParsedFiles:
    """Each list file's parse, kept by the sha256 of its content: loading the lists
    again parses only the files that changed, and of a file that only gained terms
    at the end of its array, only those (the warm build process keeps one,
    deterrence.child_build)."""

    def __init__(self) -> None:
        self._parsed: dict[Path, _Parsed] = {}
        self._replaced: dict[Path, _Parsed] = {}
        """The parses that the last load replaced, by file."""
        self._used: set[Path] = set()
        # A file parsed again after an edit checks only its new terms.
        self._problem_of = lru_cache(maxsize=1 << 17)(_term_problem)

    def load_lists(self, paths: Iterable[str | Path]) -> tuple[TermList, ...]:
        """:func:`load_lists`; forgets the files it did not load this time."""
        self._used.clear()
        self._replaced.clear()
        try:
            return load_lists(paths, self._load)
        finally:
            for gone in self._parsed.keys() - self._used:
                del self._parsed[gone]

    def load_changes(
        self, paths: Iterable[str | Path], held: Mapping[str, str]
    ) -> tuple[Change, ...]:
        """:meth:`load_lists`, each list as it differs from the parse of its file
        that the receiver holds: ``held`` names its sha256 by path. A file that
        only gained terms since that parse (when this still has it) is sent as
        those terms: the receiver decodes a few rows, not all of them again."""
        changes: list[Change] = []
        for term_list in self.load_lists(paths):
            path = cast(Path, term_list.path)
            digest = self._parsed[path].digest
            theirs = held.get(str(path))
            sent: TermList | Appended | None = term_list
            if theirs == digest:
                sent = None
            elif (replaced := self._replaced.get(path)) is not None and replaced.digest == theirs:
                sent = Appended.between(replaced.term_list, term_list) or term_list
            changes.append((str(path), digest, sent))
        return tuple(changes)

    def _load(self, path: Path) -> TermList:
        self._used.add(path)
        raw = _read(path)
        digest = hashlib.sha256(raw).hexdigest()
        kept = self._parsed.get(path)
        if kept is not None and kept.digest == digest:
            return kept.term_list
        appended = _parse_appended(path, raw, kept, self._problem_of) if kept else None
        term_list, layout = appended or _parse(path, raw, self._problem_of)
        if kept is not None:
            self._replaced[path] = kept
        self._parsed[path] = _Parsed(digest, term_list, layout)
        return term_list


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ListError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc


def _parse(path: Path, raw: bytes, problem_of: _ProblemOf) -> tuple[TermList, Layout | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ListError([f"{path}:{line}: not valid UTF-8"]) from exc
    if path.suffix == ".txt":
        return _parse_txt(path, text, problem_of), None
    if path.suffix == ".toml":
        return _parse_toml(path, text, problem_of)
    raise ListError([f"{path}: unknown list format (expected .toml or .txt)"])


def _parse_txt(path: Path, text: str, problem_of: _ProblemOf) -> TermList:
    problems: list[str] = []
    list_id = path.stem
    if not ID_PATTERN.match(list_id):
        problems.append(
            f"{path}: file name {list_id!r} is not a valid list id ([a-z0-9][a-z0-9_-]*)"
        )
    rows: list[_Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            problem = problem_of(entry)
            if problem:
                problems.append(f"{path}:{number}: {problem}")
            rows.append((entry, True, False, number))
    if not rows:
        problems.append(f"{path}: list has no terms")
    if problems:
        raise ListError(problems)
    return TermList(id=list_id, category=list_id, terms=Terms._of_rows(rows), path=path)


def _parse_toml(path: Path, text: str, problem_of: _ProblemOf) -> tuple[TermList, Layout | None]:
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise ListError([f"{path}: invalid TOML: {exc}"]) from exc
    checker = _Checker(path, text, problem_of)
    value = data.get("terms", [])
    found = Layout.of(text)
    if found is not None and not (isinstance(value, list) and len(value) == len(found[1])):
        found = None  # not one entry a line after all
    lines = found[1] if found is not None else None
    term_list = _checked(data, checker, lambda fuzzy: checker.terms(value, fuzzy, lines))
    return term_list, found[0] if found is not None else None


def _parse_appended(
    path: Path, raw: bytes, earlier: _Parsed, problem_of: _ProblemOf
) -> tuple[TermList, Layout] | None:
    """``raw`` read on top of ``earlier``, the last parse of its file, when the
    file is that one with entries appended to its terms array (and anything
    outside the array changed, with as many lines before it): only the appended
    lines and what lies outside the array are read. None when it is not so, or
    when the file has a problem (a parse of the whole then says which)."""
    old = earlier.term_list
    if earlier.layout is None or not isinstance(old.terms, Terms):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    appended = earlier.layout.appended(text)
    if appended is None:
        return None
    try:
        data = tomli.loads(appended.outside)
        entries = tomli.loads(f"terms = [\n{appended.lines}]")["terms"]
    except tomli.TOMLDecodeError:
        return None
    # The earlier rows hold, with their lines, if their list's default did not change.
    if data.get("terms") != [] or data.get("fuzzy", True) is not old.fuzzy:
        return None
    if len(entries) != len(appended.entry_lines):
        return None
    checker = _Checker(path, text, problem_of)
    rows = old.terms._rows + checker.terms(entries, old.fuzzy, appended.entry_lines)._rows
    try:
        term_list = _checked(data, checker, lambda _: Terms._of_rows(rows))
    except ListError:
        return None
    return term_list, appended.layout


def _checked(
    data: dict[str, Any], checker: _Checker, terms_of: Callable[[bool], Terms]
) -> TermList:
    """The list that TOML ``data`` describes, its terms ``terms_of(the list's
    fuzzy)``; raises ListError with every problem that ``checker`` found."""
    path = checker.path
    unknown = sorted(set(data) - _LIST_KEYS)
    if unknown:
        checker.problem(f"unknown key(s) {', '.join(unknown)}", unknown[0] + " =")
    list_id = checker.identifier(data, "id")
    category = checker.identifier(data, "category")
    action = data.get("action", "block")
    if action not in ACTIONS:
        checker.problem(f"action must be one of {', '.join(ACTIONS)}, not {action!r}", "action")
    fuzzy = checker.boolean(data, "fuzzy", default=True)
    terms = terms_of(fuzzy)
    allow = checker.strings(data, "allow")
    rules = checker.rules(data.get("rules", []))
    if not terms and not rules:
        checker.problem("a list needs at least one term or rule")
    tests = data.get("tests", {})
    if not isinstance(tests, dict):
        checker.problem("[tests] must be a table", "tests")
        tests = {}
    for key in sorted(set(tests) - _TESTS_KEYS):
        checker.problem(f"unknown key {key!r} in [tests]", key)
    tests_match = checker.strings(tests, "match", where="[tests] ")
    tests_no_match = checker.strings(tests, "no_match", where="[tests] ")
    languages = checker.strings(data, "languages")
    optional = {key: checker.optional_string(data, key) for key in ("name", "version", "source")}
    if checker.problems:
        raise ListError(checker.problems)
    return TermList(
        id=list_id,
        category=category,
        action=cast(Action, action),
        name=optional["name"],
        version=optional["version"],
        source=optional["source"],
        languages=languages,
        fuzzy=fuzzy,
        terms=terms,
        allow=allow,
        rules=rules,
        tests_match=tests_match,
        tests_no_match=tests_no_match,
        path=path,
    )


def _term_problem(term: str) -> str | None:
    if not term.strip():
        return "empty term"
    if len(canonicalize(term).replace(" ", "")) < 2:
        return f"term {term!r} canonicalizes to fewer than 2 characters"
    return None


class _Checker:
    """Validates the parsed TOML, locating each problem's line in the source."""

    def __init__(self, path: Path, source: str, problem_of: _ProblemOf) -> None:
        self.path = path
        self.problem_of = problem_of
        self.source = source
        self.problems: list[str] = []
        self._quoted: dict[str, int] | None = None

    @cached_property
    def lines(self) -> list[str]:
        # TOML's newline only: a term may hold U+2028, where splitlines() splits.
        return self.source.split("\n")

    def line_of(self, needle: str | None) -> int | None:
        if not needle:
            return None
        if len(needle) > 1 and needle[0] == needle[-1] == '"':
            # Every term asks for its line: an index keeps loading linear in the
            # number of terms (a scan per term took 3.6 s for 30,000 of them).
            found = self._quoted_lines().get(needle)
            if found is not None:
                return found
        for number, line in enumerate(self.lines, start=1):
            if needle in line:
                return number
        return None

    def _quoted_lines(self) -> dict[str, int]:
        """The first line of every double-quoted string in the source."""
        if self._quoted is None:
            self._quoted = {}
            for number, line in enumerate(self.lines, start=1):
                for quoted in _QUOTED.findall(line):
                    self._quoted.setdefault(quoted, number)
        return self._quoted

    def problem(self, message: str, needle: str | None = None, *, line: int | None = None) -> None:
        """Record a problem, at ``line``, else at the first line that holds ``needle``."""
        line = line or self.line_of(needle)
        where = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append(f"{where}: {message}")

    def identifier(self, data: dict[str, Any], key: str) -> str:
        value = data.get(key)
        if value is None:
            self.problem(f"missing required key {key!r}")
            return ""
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            self.problem(f"{key} {value!r} must match [a-z0-9][a-z0-9_-]*", f"{key} =")
            return ""
        return value

    def boolean(
        self, data: dict[str, Any], key: str, *, default: bool, line: int | None = None
    ) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{key} must be true or false, not {value!r}", f"{key} =", line=line)
            return default
        return value

    def optional_string(self, data: dict[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            self.problem(f"{key} must be a string", f"{key} =")
            return None
        return value

    def strings(self, data: dict[str, Any], key: str, *, where: str = "") -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(f"{where}{key} must be a list of strings", f"{key} =")
            return ()
        if key == "allow":
            for entry in value:
                problem = self.problem_of(entry)
                if problem:
                    self.problem(f"allow phrase: {problem}", repr(entry)[1:-1] or key)
        return tuple(value)

    def terms(self, value: Any, list_fuzzy: bool, lines: Sequence[int] | None = None) -> Terms:
        """The terms of the array ``value``; ``lines`` holds each entry's line when
        the file's layout is known, else each term gets the first line that
        holds it quoted (deterrence.list_layout)."""
        if not isinstance(value, list):
            self.problem("terms must be a list", "terms =")
            return Terms()
        rows: list[_Row] = []
        quoted = self._quoted_lines() if lines is None else {}
        for index, entry in enumerate(value):
            known = lines[index] if lines is not None else None
            text: Any
            if type(entry) is str:  # the usual term, first: a reload parses them all
                text, fuzzy, substring = entry, list_fuzzy, False
            elif isinstance(entry, dict):
                unknown = sorted(set(entry) - _TERM_KEYS)
                text = entry.get("term")
                if unknown:
                    self.problem(
                        f"unknown key(s) {', '.join(unknown)} in term {text!r}",
                        unknown[0],
                        line=known,
                    )
                if not isinstance(text, str):
                    self.problem('a term table needs term = "..."', "{", line=known)
                    continue
                fuzzy = self.boolean(entry, "fuzzy", default=list_fuzzy, line=known)
                substring = self.boolean(entry, "substring", default=False, line=known)
            else:
                self.problem(
                    f"a term must be a string or a table, not {entry!r}", "terms", line=known
                )
                continue
            problem = self.problem_of(text)
            # The index first, without a call: line_of looks there too, then scans.
            line = known or (
                quoted.get(f'"{text}"') or self.line_of(f'"{text}"') or self.line_of(text or None)
            )
            if problem:
                self.problem(problem, f'"{text}"' if text else '""', line=known)
            rows.append((text, fuzzy, substring, line))
        return Terms._of_rows(rows)

    def rules(self, value: Any) -> tuple[Rule, ...]:
        if not isinstance(value, list):
            self.problem("rules must be an array of tables ([[rules]])", "rules")
            return ()
        rules: list[Rule] = []
        for entry in value:
            if not isinstance(entry, dict):
                self.problem("each rule must be a table", "[[rules]]")
                continue
            for key in sorted(set(entry) - _RULE_KEYS):
                self.problem(f"unknown key {key!r} in a rule", f"{key} =")
            rule_id = self.identifier(entry, "id")
            groups = entry.get("all_of")
            if (
                not isinstance(groups, list)
                or not groups
                or not all(
                    isinstance(g, list) and g and all(isinstance(m, str) for m in g) for g in groups
                )
            ):
                self.problem(
                    f"rule {rule_id!r}: all_of must be a non-empty list of "
                    "non-empty lists of strings",
                    "all_of",
                )
                continue
            for group in groups:
                for member in group:
                    problem = self.problem_of(member)
                    if problem:
                        self.problem(f"rule {rule_id!r}: {problem}", "all_of")
            rules.append(Rule(rule_id, tuple(tuple(g) for g in groups)))
        return tuple(rules)
