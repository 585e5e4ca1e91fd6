"""The compiled index of term lists, and the :class:`Match` it returns.

Matching (DESIGN §4) runs in two passes over the canonical query
(:mod:`deterrence.text`):

1. **Inside words**: one Aho–Corasick automaton (pyahocorasick, in C) holds the
   canonical form of every pattern that may match inside a word — substring
   terms, and terms in scripts without spaces — and finds them all in one pass.
2. **Word by word**: every query word (and every join of words that a lone
   punctuation mark separates, every alternative reading, every stretch of a
   run of spaced letters, and the words of a run's other readings) is looked up
   in the vocabulary of term words, exactly and through the candidate index of
   :mod:`deterrence.fuzzy` (symmetric deletions for words of 5–8 letters, parts
   of longer ones), whose short candidate lists rapidfuzz's OSA distance then
   verifies. No query is ever compared with every term. Multi-word terms are
   assembled from consecutive words through an index keyed by their first two
   words.

Whole-word patterns used to be in the automaton too. A lookup per word finds
the same matches, and keeping them out of it saves its memory (105 MiB at
100,000 terms), its build, and the one C call of its unpickle that held the
interpreter lock at every reload (180 ms at 100,000 terms).

A built :class:`Matcher` is immutable: share it freely across threads and
asyncio tasks, and build a new one for a new list set. Its one mutable part is
a bounded memo of recent queries' answers and recent words' candidates
(:mod:`deterrence.memo`), which changes how fast an answer comes, never what it is.
"""

from __future__ import annotations

import marshal
import re
import secrets
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import ahocorasick

from deterrence.collector import collector_paused, young_collection
from deterrence.fuzzy import FuzzyIndex, allowance
from deterrence.lists import SEVERITY, Action, Term, TermList, Terms, load_lists
from deterrence.memo import DEFAULT_SIZE, UNSEEN, Memo, Packing, Unseen
from deterrence.text import (
    CanonicalText,
    Token,
    Transform,
    canonical_text,
    is_no_space_script,
    term_words,
    transform_names,
)

# Reported beside the canonicalization transforms.
JOINED_PHRASE = "joined_phrase"

_TERM, _ALLOW, _MEMBER = range(3)
_K = TypeVar("_K")
_LINEAGE_GROWTHS = 16
"""How many growths back a grown matcher completes its word memo's candidates."""
_LINEAGE_WORDS = 64
"""At most this many fuzzy words added in them (each compared with every word
looked up that an earlier matcher found candidates for)."""
_WARM_UP_QUERIES = (
    # Innocent and invented, one for each path through canonicalization: plain
    # ASCII, diacritics, look-alike scripts, no-space scripts, leet and
    # punctuation, spaced letters, compatibility forms, and long words.
    "search for books online",
    "café crème brûlée recette",
    "книги по истории",
    "ΑΒΓ δέλτα",
    "日本の小説",
    "b00ks & m0re!",
    "b o o k s",
    "Ｆｕｌｌ ｗｉｄｔｈ",
    "extraordinarily comprehensive encyclopaedia",
)
_MAX_JOIN = 8  # longest run of punctuation-joined words tried as one word
_BEGINNING = 4
"""How many letters of each vocabulary word ``Matcher._beginnings`` keeps (21,000
beginnings at 100,000 terms, 1.5 MB): a start in a run of spaced letters where none
begins is ruled out for every stretch of 4+ letters at once. At 100,000 terms that
halves the cost of a run (61 → 34 µs for 14 letters; 3 letters: 48 µs, 5: 30 µs for
twice the memory)."""


@dataclass(frozen=True, slots=True)
class Match:
    """Why a query matched. Truthy; ``hits`` holds every list's match, most
    severe first (``hits[0]`` is this match itself)."""

    action: Action
    list_id: str
    category: str
    term: str | None
    rule: str | None
    transforms: tuple[str, ...]
    distance: int = 0
    hits: tuple[Match, ...] = ()

    def explain(self) -> dict[str, object]:
        """A JSON-ready description (used by ``deterrence match --json``)."""
        return {
            "list": self.list_id,
            "category": self.category,
            "action": self.action,
            "term": self.term,
            "rule": self.rule,
            "transforms": list(self.transforms),
            "distance": self.distance,
        }


def _packed(match: Match) -> bytes:
    """A match as a memo keeps it: its fields, plain values, marshalled (1 µs;
    unpacked in 4 µs, against 7 and 8 µs with pickle)."""
    return marshal.dumps(_plain(match))


def _unpacked(packed: bytes) -> Match:
    return _of_plain(marshal.loads(packed))


_Candidates = tuple[int, dict[int, int]]
"""A word's candidates as the word memo keeps them: (the token of the matcher
that found them, word id -> edits)."""


def _packed_candidates(kept: _Candidates) -> bytes:
    """A word's candidates as the word memo keeps them (a dict of candidate dicts
    is tracked, and every full collection walked its 100,000 entries)."""
    return marshal.dumps(kept) if kept[1] else _no_candidates_packed(kept[0])


@lru_cache(maxsize=4)
def _no_candidates_packed(token: int) -> bytes:
    """Most words are near no term: one shared packing for them all, by matcher
    (a memo full of empty dicts took 4 MB, and 5 ms to free at a reload)."""
    return marshal.dumps((token, {}))


def _unpacked_candidates(packed: bytes) -> _Candidates:
    return cast(_Candidates, marshal.loads(packed))


_MATCH_PACKING = Packing(_packed, _unpacked)
_CANDIDATES_PACKING = Packing(_packed_candidates, _unpacked_candidates)


def _plain(match: Match) -> tuple[Any, ...]:
    m = match
    hits = tuple(map(_plain, m.hits))
    return m.action, m.list_id, m.category, m.term, m.rule, m.transforms, m.distance, hits


def _of_plain(plain: tuple[Any, ...]) -> Match:
    action, list_id, category, term, rule, transforms, distance, hits = plain
    return Match(
        action, list_id, category, term, rule, transforms, distance, tuple(map(_of_plain, hits))
    )


_PatternRow = tuple[int, int, str, tuple[int, ...], bool, int, int]


@dataclass(frozen=True, slots=True)
class _Patterns:
    """Every pattern's fields, one tuple per field, indexed by pattern number.
    Tuples of plain values are not tracked by the cycle collector, whereas an
    object per pattern would be: 100,000 more objects for every full collection
    to walk, and a collection follows each reload (the latency it adds shows in
    the soak)."""

    list_index: tuple[int, ...]
    kind: tuple[int, ...]
    text: tuple[str, ...]
    words: tuple[tuple[int, ...], ...]
    fuzzy: tuple[bool, ...]
    rule: tuple[int, ...]
    group: tuple[int, ...]

    @classmethod
    def of(cls, rows: list[_PatternRow]) -> _Patterns:
        columns = tuple(zip(*rows, strict=True)) if rows else ((),) * len(fields(cls))
        return cls(*columns)


@dataclass(slots=True)  # not frozen: frozen __init__ costs 1.3 µs a hit, against 0.16
class _Hit:
    pattern: int
    start: int  # token span [start, end)
    end: int
    distance: int
    flags: int
    joined: bool


@dataclass(slots=True)
class _Edge:
    start: int  # token span [start, end)
    end: int
    text: str
    flags: int
    candidates: dict[int, int]  # vocabulary word id -> edit distance
    inside: bool = False
    """A stretch of a run of spaced letters: matched exactly (its candidates are
    given), and it may follow or precede another word only where it starts or
    ends with its token (``opens``, ``closes``)."""
    opens: bool = True
    closes: bool = True


class _Lineage(NamedTuple):
    """The matchers a grown one (Matcher.extended) grew from, which share its word
    memo: a reload that adds terms leaves the candidates of recent words warm,
    where a fresh memo had every word looked up in the big index again
    (bench.soak: the median request 10 % slower after each reload, for seconds).

    Candidates that one of ``ancestors`` found are candidates still (its words
    and their ids are this matcher's too), and only ``words`` can be new ones:
    compared with them (FuzzyIndex.candidates_among), they are completed. Any
    other's (a sibling's, or a retired matcher's request still under way) are
    looked up anew."""

    ancestors: tuple[int, ...]
    """The tokens of the last _LINEAGE_GROWTHS matchers this one grew from, oldest first."""
    growths: tuple[tuple[str, ...], ...]
    """The fuzzy words each growth since the oldest of them added, oldest first."""
    words: tuple[str, ...]
    """All of those."""


_NO_LINEAGE = _Lineage((), (), ())


class Matcher:
    """Matches queries against a set of term lists."""

    # The one mutable part: answers for recent queries and candidates for recent
    # words (they never change, so remembering them is safe). Made by memo_size.
    _query_memo: Memo[Match | Unseen | None]
    _word_memo: Memo[_Candidates | None]
    request_memo: Memo[Match | Unseen | None]
    """Answers a caller keeps under keys of its own (the middleware: whole query
    strings), here so that they go with the lists they came from."""
    _inside_words: ahocorasick.Automaton | None
    _no_space_words: tuple[re.Pattern[str], ahocorasick.Automaton] | None
    """(its keys' first characters, the automaton), or None without such terms"""
    _lineage = _NO_LINEAGE
    _token: int
    """Tells this matcher's word memo entries from others' (random: a matcher
    built in another process has one too)."""

    def __init__(self, lists: Sequence[TermList], *, memo_size: int = DEFAULT_SIZE) -> None:
        with collector_paused():  # everything built here survives (deterrence.collector)
            self._build(lists, memo_size)

    def _build(self, lists: Sequence[TermList], memo_size: int) -> None:
        self.lists: tuple[TermList, ...] = tuple(lists)
        self.memo_size = memo_size
        self.grown_by: int | None = None
        """How many terms :meth:`extended` added to the matcher this grew from; None: built."""
        self._token = _new_token()
        self._start_adding(first_pattern=0, words=[], vocabulary={})
        keys: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
        for list_index, term_list in enumerate(self.lists):
            for term in term_list.terms:
                self._add(keys, list_index, _TERM, term)
            for phrase in term_list.allow:
                # Exact only: a misspelt allow phrase must not cancel a real match.
                self._add(keys, list_index, _ALLOW, Term(phrase, fuzzy=False))
            for rule_index, rule in enumerate(term_list.rules):
                for group_index, group in enumerate(rule.all_of):
                    for member in group:
                        term = Term(member, term_list.fuzzy)
                        self._add(keys, list_index, _MEMBER, term, rule_index, group_index)
        self._set_automata(keys)
        self._longest_word = max(map(len, self._word_list), default=0)
        # A set, not a frozenset: a reload unpickles sets in pieces (deterrence.pieces).
        self._beginnings = {word[:_BEGINNING] for word in self._word_list}
        self._word_filter: bytes | None = None
        self._words = tuple(self._word_list)
        self._fuzzy = FuzzyIndex(self._words, self._fuzzy_words)
        # Freeze what was built: plain dicts of tuples never insert on lookup, and
        # tuples of ints are not tracked by the cycle collector (see _Patterns).
        self._patterns = _Patterns.of(self._rows)
        self._phrases = _merged({}, self._phrasing)
        self._joined = _merged({}, self._joining)
        self._end_adding()
        self._vocabulary_filter()

    def extended(
        self, lists: Sequence[TermList], pause: Callable[[], None] = lambda: None
    ) -> Matcher | None:
        """A matcher over ``lists`` built on this one, when they are this matcher's
        lists with terms added, and nothing else changed that matching reads (their
        versions, names, tests and line numbers may differ); else None.

        It answers every query as ``Matcher(lists)`` does, for a part of the cost:
        the new terms go into copies of this matcher's tables, and what they share
        is shared (5,000 terms and one more: 3 ms, against 0.2 s to build and 0.05 s
        to unpickle). A reload that adds terms, the usual change to a list, does not
        build at all. ``pause()`` is called between its steps (none takes 1 ms)."""
        if len(lists) != len(self.lists):
            return None
        added: list[list[Term]] = []
        for old, new in zip(self.lists, lists, strict=True):
            if _matching_fields(old) != _matching_fields(new):
                return None
            terms = new.terms.beyond(old.terms) if isinstance(new.terms, Terms) else None
            if terms is None:
                return None
            added.append(terms)
        grown = Matcher.__new__(Matcher)
        with collector_paused() as paused:
            grown._grow(self, lists, added, pause, young_collection(paused))
        return grown

    def _grow(
        self,
        base: Matcher,
        lists: Sequence[TermList],
        added: list[list[Term]],
        pause: Callable[[], None],
        settle: Callable[[], None],
    ) -> None:
        """_build, for ``base``'s lists with ``added`` terms (in each list's order).
        ``settle()`` runs where the new keys exist and the copies of ``base``'s big
        dicts that they go into do not yet (deterrence.collector.young_collection)."""
        self.lists = tuple(lists)
        self.grown_by = sum(map(len, added))
        self.memo_size = base.memo_size
        self._start_adding(
            first_pattern=len(base._patterns.text),
            words=list(base._words),
            vocabulary=dict(base._vocabulary),
        )
        pause()
        keys: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
        for list_index, terms in enumerate(added):
            for term in terms:
                self._add(keys, list_index, _TERM, term)
        pause()
        if keys:  # an automaton cannot grow: both are built again, with the old keys first
            old = [base._inside_words, base._no_space_words and base._no_space_words[1]]
            for automaton in filter(None, old):
                for key, values in automaton.items():
                    keys[key][:0] = values
            self._set_automata(keys)
            pause()
        else:
            self._inside_words, self._no_space_words = base._inside_words, base._no_space_words
        new_words = self._word_list[len(base._words) :]
        self._longest_word = max(base._longest_word, *map(len, new_words), 0)
        beginnings = {word[:_BEGINNING] for word in new_words} - base._beginnings
        self._beginnings = base._beginnings | beginnings if beginnings else base._beginnings
        self._words = (*base._words, *new_words)
        self._fuzzy = base._fuzzy.extended(self._words, self._fuzzy_words, pause, settle)
        pause()
        self._phrases = _merged(base._phrases, self._phrasing, settle)
        self._joined = _merged(base._joined, self._joining, settle)
        new_patterns = _Patterns.of(self._rows)
        columns: list[tuple[Any, ...]] = []
        for column in fields(_Patterns):
            name = column.name
            columns.append(getattr(base._patterns, name) + getattr(new_patterns, name))
            # Each new column is a tuple as long as the lists: walked by a young
            # collection once, then no more; one at a time, they leave no
            # collection of all of them (5,000 terms: ~1 ms) to the requests.
            settle()
            pause()
        self._patterns = _Patterns(*columns)
        self._end_adding()
        pause()
        self._token = _new_token()
        self._lineage = base._grown_lineage(self._fuzzy.added)
        self._word_memo = base._word_memo
        self._word_filter = base._vocabulary_filter()
        if len(self._word_filter) != _filter_size(len(self._vocabulary)):
            self._word_filter = None  # outgrown: built again from the whole vocabulary
        elif new_words:
            slots = bytearray(self._word_filter)
            for word in new_words:
                slots[hash(word) & (len(slots) - 1)] = 1
            self._word_filter = bytes(slots)
        self._vocabulary_filter()

    def _start_adding(
        self, *, first_pattern: int, words: list[str], vocabulary: dict[str, int]
    ) -> None:
        """What _add fills in, until _end_adding."""
        self._first_pattern = first_pattern
        self._rows: list[_PatternRow] = []
        self._word_list = words
        self._vocabulary = vocabulary
        self._fuzzy_words: set[int] = set()
        self._joining: defaultdict[int, list[int]] = defaultdict(list)  # joined word -> patterns
        self._phrasing: defaultdict[tuple[int, ...], list[int]] = defaultdict(list)

    def _end_adding(self) -> None:
        # The fuzzy words are the fuzzy index's now (it skips those it has when extended).
        del self._first_pattern, self._rows, self._phrasing, self._joining, self._word_list
        del self._fuzzy_words

    def _set_automata(self, keys: dict[str, list[tuple[int, int, bool]]]) -> None:
        # Two automata: pyahocorasick finds a node's child by a linear search, and
        # terms in scripts without spaces give the root thousands of children,
        # which every other character of every query went through (0.38 µs a
        # character). Their automaton runs only on a text holding the first
        # character of one of its keys.
        no_space = {key: values for key, values in keys.items() if is_no_space_script(key)}
        self._inside_words = _automaton({k: v for k, v in keys.items() if k not in no_space})
        automaton = _automaton(no_space)
        self._no_space_words = (
            None
            if automaton is None
            else (
                re.compile("[" + "".join(sorted({re.escape(k[0]) for k in no_space})) + "]"),
                automaton,
            )
        )

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_word_filter"] = None  # hashes of strings differ from process to process
        return state

    def _vocabulary_filter(self) -> bytes:
        """One byte per slot, set where the hash of a vocabulary word falls: a
        cheap test that rules out most strings before a lookup in the (big)
        vocabulary. Built in each process on first use."""
        found = self._word_filter
        if found is None:
            size = _filter_size(len(self._vocabulary))
            slots = bytearray(size)
            for word in self._vocabulary:
                slots[hash(word) & (size - 1)] = 1
            found = self._word_filter = bytes(slots)
        return found

    @classmethod
    def from_path(cls, paths: str | Path | Iterable[str | Path]) -> Matcher:
        """Load lists from a file, a directory, or several of them."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return cls(load_lists(paths))

    @classmethod
    def from_terms(
        cls,
        terms: Iterable[str],
        *,
        fuzzy: bool = True,
        list_id: str = "terms",
        category: str = "terms",
        action: Action = "block",
        memo_size: int = DEFAULT_SIZE,
    ) -> Matcher:
        """A matcher over one in-memory list (tests, benchmarks, experiments)."""
        term_list = TermList(
            id=list_id,
            category=category,
            action=action,
            fuzzy=fuzzy,
            terms=tuple(Term(t, fuzzy) for t in terms),
        )
        return cls([term_list], memo_size=memo_size)

    @property
    def memo_size(self) -> int:
        """How many recent queries and words (each) the matcher remembers
        answers for, up to twice over (deterrence.memo); 0: none."""
        return self._query_memo.size

    @memo_size.setter
    def memo_size(self, size: int) -> None:
        # Fresh memos, swapped in whole: a request under way keeps the one it read.
        # Answers and candidates are kept packed (deterrence.memo): the cycle
        # collector never walks them, nor the memos' dicts.
        self._query_memo = Memo(size, _MATCH_PACKING)
        self._word_memo = Memo(size, _CANDIDATES_PACKING)
        self.request_memo = Memo(size, _MATCH_PACKING)

    @property
    def memos(self) -> tuple[Memo[Any], ...]:
        """The answers it remembers: for recent queries, recent words (shared
        with the matchers it grew from and that grow from it), and its callers'."""
        return self._query_memo, self._word_memo, self.request_memo

    @property
    def term_count(self) -> int:
        return sum(len(term_list.terms) for term_list in self.lists)

    # -- building --------------------------------------------------------

    def _word_id(self, word: str) -> int:
        word_id = self._vocabulary.get(word)
        if word_id is None:
            word_id = self._vocabulary[word] = len(self._word_list)
            self._word_list.append(word)
        return word_id

    def _add(
        self,
        keys: dict[str, list[tuple[int, int, bool]]],
        list_index: int,
        kind: int,
        term: Term,
        rule: int = -1,
        group: int = -1,
    ) -> None:
        words = term_words(term.text)
        if not words:
            return
        pattern_index = self._first_pattern + len(self._rows)
        phrase = " ".join(words)
        joined = "".join(
            w[1:] if i and w[0] == words[i - 1][-1] and w[0].isalpha() else w
            for i, w in enumerate(words)
        )  # collapse across joins, as queries are
        no_space_script = is_no_space_script(joined)
        anywhere = term.substring or no_space_script
        word_ids = tuple(self._word_id(w) for w in words) if not no_space_script else ()
        self._rows.append((list_index, kind, term.text, word_ids, term.fuzzy, rule, group))
        if anywhere:
            # Automaton values: (pattern, key length, joined form). Whole-word
            # patterns are found word by word instead (_lattice_hits).
            keys[phrase].append((pattern_index, len(phrase), False))
        if no_space_script:
            return
        # Words for the fuzzy pass: substring terms too, so that a misspelt
        # substring term still matches as a whole word (exact inside words).
        self._phrasing[word_ids[:2]].append(pattern_index)
        if len(words) > 1:
            if anywhere:
                keys[joined].append((pattern_index, len(joined), True))
            joined_id = self._word_id(joined)
            self._joining[joined_id].append(pattern_index)
            if term.fuzzy and allowance(len(joined)):
                self._fuzzy_words.add(joined_id)
        if term.fuzzy:
            self._fuzzy_words.update(
                i for i, w in zip(word_ids, words, strict=True) if allowance(len(w))
            )

    def warm_up(self, pause: Callable[[], None] = lambda: None) -> None:
        """Answer a few fixed queries of every kind, and the lists' own test
        strings, before this matcher takes traffic (``pause`` between them).

        A matcher fresh from a reload is cold: its first searches paid up to
        ~0.2-0.5 ms each at 5,000 terms, against 20-50 µs once its tables are
        in the CPU caches (bench.soak's matching-work histogram after every
        reload). The answers stay in the memos, keyed by hash as any other."""
        for query in (*_WARM_UP_QUERIES, *_test_strings(self.lists)):
            self.match(query)
            pause()

    # -- matching ----------------------------------------------------------

    def match(self, query: str) -> Match | None:
        """The most severe match for ``query``, or None."""
        found = self._query_memo.get(query, UNSEEN)
        if isinstance(found, Unseen):
            found = self._match(query)
            self._query_memo.put(query, found)
        return found

    def _match(self, query: str) -> Match | None:
        canonical = canonical_text(query)
        if not canonical.tokens:
            return None
        hits = self._exact_hits(canonical)
        hits.extend(self._token_hits(canonical.tokens))
        return self._decide(hits) if hits else None

    def _token_hits(self, tokens: Sequence[Token]) -> list[_Hit]:
        """The lattice's hits, and those of the other ways its runs of spaced
        letters read (_run_hits)."""
        hits = self._lattice_hits(tokens)
        for index, token in enumerate(tokens):
            if token.spaces:
                hits.extend(self._run_hits(tokens, index, _run_words(token)))
            if token.pieces:
                hits.extend(self._run_hits(tokens, index, token.pieces))
        return hits

    def _exact_hits(self, canonical: CanonicalText) -> list[_Hit]:
        hits: list[_Hit] = []
        text = canonical.text
        found = [] if self._inside_words is None else list(self._inside_words.iter(text))
        if self._no_space_words is not None and self._no_space_words[0].search(text):
            more = list(self._no_space_words[1].iter(text))
            if found and more:
                # The order one automaton gives: by end, and the longest key first.
                found = sorted([*found, *more], key=lambda item: (item[0], -item[1][0][1]))
            else:
                found = found or more
        for end_index, values in found:
            end = end_index + 1
            for pattern, length, joined in values:
                start = end - length
                first = bisect_right(canonical.starts, start) - 1
                last = bisect_left(canonical.ends, end)
                flags = 0
                for index in range(max(first, 0), last + 1):
                    token = canonical.tokens[index]
                    flags |= token.flags
                    if index > first:
                        flags |= token.join
                hits.append(_Hit(pattern, max(first, 0), last + 1, 0, flags, joined))
        return hits

    def _edges(self, tokens: Sequence[Token]) -> list[_Edge]:
        edges: list[_Edge] = []
        for index, token in enumerate(tokens):
            edges.append(_Edge(index, index + 1, token.text, token.flags, {}))
            for text, flags in token.alternatives:
                edges.append(_Edge(index, index + 1, text, flags, {}))
            if token.inner:
                edges.extend(self._spaced_words(index, token))
            # Words joined by lone punctuation marks, tried as one word.
            joined, flags = token.text, token.flags
            end = index + 1
            while end < len(tokens) and tokens[end].join and end - index < _MAX_JOIN:
                following = tokens[end].text
                if joined and following and joined[-1] == following[0]:
                    following = following[1:]
                joined += following
                flags |= tokens[end].flags | tokens[end].join
                end += 1
                edges.append(_Edge(index, end, joined, flags, {}))
        return edges

    def _spaced_words(self, index: int, token: Token) -> list[_Edge]:
        """Term words inside a run of spaced letters (``x z o r b l a x``): the
        run is one token, and any stretch of it from one of its letters to
        another may be a word (found exactly; the whole run is also matched
        fuzzily, as any token)."""
        text = token.text
        end = len(text)
        cuts = (0, *token.inner, end)
        edges: list[_Edge] = []
        # A run of n letters has about n * longest stretches, nearly none of them
        # a word. From a start where no word begins (its first _BEGINNING
        # letters), only shorter stretches are tried; the others are mostly ruled
        # out by the filter, without a (cache-missing) lookup in the vocabulary.
        word_filter = self._vocabulary_filter()
        mask = len(word_filter) - 1
        longest, vocabulary, beginnings = self._longest_word, self._vocabulary, self._beginnings
        for position, start in enumerate(cuts):
            reach = longest if text[start : start + _BEGINNING] in beginnings else _BEGINNING - 1
            for stop in cuts[position + 1 :]:
                if stop - start > reach:
                    break
                if start == 0 and stop == end:
                    continue  # the whole run: the token's own edge
                stretch = text[start:stop]
                if not word_filter[hash(stretch) & mask]:
                    continue
                word_id = vocabulary.get(stretch)
                if word_id is not None:
                    edges.append(
                        _Edge(
                            index,
                            index + 1,
                            stretch,
                            token.flags,
                            {word_id: 0},
                            inside=True,
                            opens=start == 0,
                            closes=stop == end,
                        )
                    )
        return edges

    def _candidates(self, text: str) -> dict[int, int]:
        """Vocabulary words within their allowance of ``text`` (word id -> edits).
        Callers only read the result: it may be shared through the memo."""
        kept = self._word_memo.get(text, None)
        if kept is not None and kept[0] == self._token:
            return kept[1]
        exact = self._vocabulary.get(text)
        lineage = self._lineage
        if kept is not None and kept[0] in lineage.ancestors:
            found = kept[1]  # unpacked afresh; completed with the words added since (_Lineage)
            if lineage.words:
                self._fuzzy.candidates_among(text, lineage.words, found)
        else:
            found = {} if exact is None else {exact: 0}
            self._fuzzy.candidates(text, found)
        if exact is not None:
            found[exact] = 0  # the exact reading wins over any fuzzy one
        self._word_memo.put(text, (self._token, found))
        return found

    def _grown_lineage(self, added: tuple[str, ...]) -> _Lineage:
        """The lineage of a matcher grown from this one by ``added`` fuzzy words."""
        ancestors = (*self._lineage.ancestors, self._token)[-_LINEAGE_GROWTHS:]
        growths = (*self._lineage.growths, added)[-len(ancestors) :]
        words = tuple(word for growth in growths for word in growth)
        if len(words) > _LINEAGE_WORDS:
            return _NO_LINEAGE  # too many to compare: its words are looked up anew
        return _Lineage(ancestors, growths, words)

    def _lattice_hits(self, tokens: Sequence[Token]) -> list[_Hit]:
        edges = self._edges(tokens)
        found = False
        for edge in edges:
            if not edge.inside:
                edge.candidates = self._candidates(edge.text)
            found = found or bool(edge.candidates)
        if not found:
            return []
        by_start: dict[int, list[_Edge]] = defaultdict(list)
        for edge in edges:
            if edge.candidates and edge.opens:
                by_start[edge.start].append(edge)
        hits: list[_Hit] = []
        for edge in edges:
            for word_id, distance in edge.candidates.items():
                for pattern_index in self._joined.get(word_id, ()):
                    if self._within(pattern_index, self._words[word_id], distance):
                        flags = edge.flags | (Transform.EDIT if distance else 0)
                        hits.append(
                            _Hit(pattern_index, edge.start, edge.end, distance, flags, True)
                        )
                for pattern_index in self._phrases.get((word_id,), ()):
                    if self._within(pattern_index, self._words[word_id], distance):
                        flags = edge.flags | (Transform.EDIT if distance else 0)
                        hits.append(
                            _Hit(pattern_index, edge.start, edge.end, distance, flags, False)
                        )
                for following in by_start.get(edge.end, ()) if edge.closes else ():
                    for second_id, second_distance in following.candidates.items():
                        for pattern_index in self._phrases.get((word_id, second_id), ()):
                            hit = self._extend(
                                pattern_index,
                                edge,
                                [distance, second_distance],
                                following,
                                by_start,
                            )
                            if hit is not None:
                                hits.append(hit)
        return hits

    def _run_hits(self, tokens: Sequence[Token], index: int, pieces: Sequence[Token]) -> list[_Hit]:
        """Terms in the query read with a run of spaced letters, ``tokens[index]``,
        as ``pieces``; what matches across one of them spans the whole run. The
        run itself only has exact stretches and, fuzzily, its whole
        (_spaced_words); its pieces are words, fuzzily as any word:

        - the stretches between its spaces, where the query separated its letters
          by punctuation within words and by spaces between them (``z.o.r.b
          q.u.u.x``, _run_words);
        - the words it reads as with the symbols at its letters' edges read as
          letters (``s h y z s k $i l``: ``shyzsk si l``, Token.pieces)."""
        spliced = [*tokens[:index], *pieces, *tokens[index + 1 :]]
        found = self._lattice_hits(spliced)
        for offset, piece in enumerate(pieces):
            if piece.spaces:
                found.extend(self._run_hits(spliced, index + offset, _run_words(piece)))
        last = index + len(pieces)  # where the pieces end in ``spliced``
        hits: list[_Hit] = []
        for hit in found:
            if hit.end <= index or hit.start >= last:
                continue  # found without the pieces too
            hit.start = min(hit.start, index)
            hit.end = max(hit.end - len(pieces) + 1, index + 1)
            hits.append(hit)
        return hits

    def _within(self, pattern_index: int, word: str, distance: int) -> bool:
        if distance == 0:
            return True
        return self._patterns.fuzzy[pattern_index] and distance <= allowance(len(word))

    def _extend(
        self,
        pattern_index: int,
        first: _Edge,
        distances: list[int],
        last: _Edge,
        by_start: dict[int, list[_Edge]],
    ) -> _Hit | None:
        words = self._patterns.words[pattern_index]
        path = [first, last]
        # Later words: follow the one best edge for each.
        while len(path) < len(words):
            if not path[-1].closes:
                return None
            word_id = words[len(path)]
            best: _Edge | None = None
            for edge in by_start.get(path[-1].end, ()):
                if word_id in edge.candidates and (
                    best is None or edge.candidates[word_id] < best.candidates[word_id]
                ):
                    best = edge
            if best is None:
                return None
            distances.append(best.candidates[word_id])
            path.append(best)
        for word_id, distance in zip(words, distances, strict=True):
            if not self._within(pattern_index, self._words[word_id], distance):
                return None
        flags = 0
        for edge in path:
            flags |= edge.flags
        total = sum(distances)
        if total:
            flags |= Transform.EDIT
        return _Hit(pattern_index, first.start, path[-1].end, total, flags, False)

    def _decide(self, hits: list[_Hit]) -> Match | None:
        by_list: dict[int, list[_Hit]] = defaultdict(list)
        for hit in hits:
            by_list[self._patterns.list_index[hit.pattern]].append(hit)
        matches: list[tuple[int, Match]] = []
        for list_index, list_hits in by_list.items():
            found = self._list_match(list_index, list_hits)
            if found is not None:
                matches.append((list_index, found))
        if not matches:
            return None
        if len(matches) > 1:
            matches.sort(key=lambda item: (-SEVERITY[item[1].action], item[0]))
        ordered = tuple([match for _, match in matches])
        first = ordered[0]
        return Match(
            first.action,
            first.list_id,
            first.category,
            first.term,
            first.rule,
            first.transforms,
            first.distance,
            ordered,
        )

    def _list_match(self, list_index: int, hits: list[_Hit]) -> Match | None:
        term_list = self.lists[list_index]
        patterns = self._patterns
        kind = patterns.kind
        allowed = [h for h in hits if kind[h.pattern] == _ALLOW]
        kept = (
            [
                h
                for h in hits
                if kind[h.pattern] != _ALLOW
                and not any(a.start < h.end and h.start < a.end for a in allowed)
            ]
            if allowed
            else hits
        )
        terms = [h for h in kept if kind[h.pattern] == _TERM]
        if terms:
            # The nearest reading, the fewest transforms; ties go by the term and
            # its transforms, not by where a hit came in the list: a matcher grown
            # from another (extended) finds the same hits in another order.
            best = (
                terms[0]
                if len(terms) == 1
                else min(terms, key=lambda h: _rank(h, patterns.text[h.pattern]))
            )
            return self._make_match(term_list, best, patterns.text[best.pattern], None)
        members = [h for h in kept if kind[h.pattern] == _MEMBER]
        for rule_index, rule in enumerate(term_list.rules):
            groups: dict[int, _Hit] = {}  # the best hit of each group (ties as above)
            for hit in members:
                group = patterns.group[hit.pattern]
                if patterns.rule[hit.pattern] == rule_index and (
                    group not in groups or _rank(hit) < _rank(groups[group])
                ):
                    groups[group] = hit
            if len(groups) == len(rule.all_of):
                flags = 0
                for hit in groups.values():
                    flags |= hit.flags
                distance = sum(hit.distance for hit in groups.values())
                combined = _Hit(-1, 0, 0, distance, flags, any(h.joined for h in groups.values()))
                return self._make_match(term_list, combined, None, rule.id)
        return None

    @staticmethod
    def _make_match(term_list: TermList, hit: _Hit, term: str | None, rule: str | None) -> Match:
        names = transform_names(hit.flags)
        if hit.joined:
            names += (JOINED_PHRASE,)
        return Match(
            term_list.action, term_list.id, term_list.category, term, rule, names, hit.distance
        )


def _rank(hit: _Hit, term: str = "") -> tuple[int, int, str, int, bool]:
    """Which of two hits is better (the smaller): the nearer reading, the fewer
    transforms; then, for a definite order, the term and its transforms."""
    return hit.distance, hit.flags.bit_count(), term, hit.flags, hit.joined


def _matching_fields(term_list: TermList) -> tuple[object, ...]:
    """What a matcher reads of a list besides its terms."""
    t = term_list
    return (t.id, t.category, t.action, t.fuzzy, t.allow, t.rules)


def _merged(
    old: dict[_K, tuple[int, ...]],
    new: Mapping[_K, list[int]],
    settle: Callable[[], None] = lambda: None,
) -> dict[_K, tuple[int, ...]]:
    """``old`` with ``new``'s values added to its own; ``settle()`` between making
    the new entries and copying ``old`` (see Matcher._grow)."""
    if not new:
        return old  # shared: a copy would be one more big container to collect
    entries = {key: (*old.get(key, ()), *found) for key, found in new.items()}
    settle()
    merged = dict(old)
    merged.update(entries.items())  # item by item: an empty dict would clone tracking
    return merged


def _new_token() -> int:
    return secrets.randbits(62)


def _filter_size(vocabulary: int) -> int:
    return 1 << max(10, (8 * vocabulary).bit_length())


def _run_words(token: Token) -> list[Token]:
    """The stretches of a run of spaced letters between the query's spaces."""
    cuts = (0, *token.spaces, len(token.text))
    return [Token(token.text[start:end], token.flags) for start, end in pairwise(cuts)]


def _automaton(keys: dict[str, list[tuple[int, int, bool]]]) -> ahocorasick.Automaton | None:
    """An Aho–Corasick automaton of ``keys``; their values are (pattern, key length,
    joined form). None when there are none."""
    if not keys:
        return None
    automaton = ahocorasick.Automaton()
    for key, values in keys.items():
        automaton.add_word(key, tuple(values))
    automaton.make_automaton()
    return automaton


def _test_strings(lists: Sequence[TermList], limit: int = 64) -> list[str]:
    """Up to ``limit`` of the lists' own ``[tests]`` strings."""
    found = [text for tl in lists for text in (*tl.tests_match, *tl.tests_no_match)]
    return found[:limit]
