"""The candidate index for misspellings (DESIGN §4): every term word within the
edit allowance of a query word, found without comparing the query with every
term word, then verified with rapidfuzz's OSA distance.

Two schemes, by the term word's length, each chosen so that its keys are long
enough to stay selective at 100,000 terms:

- **5–8 letters, one edit** — symmetric deletions: a term word and a query word
  one edit apart (substitution, insertion, deletion or adjacent transposition)
  share the word itself or a one-letter deletion. The index holds each word and
  its deletions; a query looks up itself and its own deletions. (Halves would
  need fewer keys, but their 3–4-letter keys return long lists at 100,000 terms:
  p99 1.0 ms against 0.68 ms with deletions, for +30 MB.)
- **9+ letters, two edits** — thirds: two edits leave one third intact, at an
  offset moved by at most two. A transposition across a boundary touches two
  thirds and the other edit may hit the third one, so the index also holds the
  thirds of the word with the letters at each boundary swapped.

Each scheme, and each part of each term length, has a table of its own, so
posting lists stay short and a probe needs no key prefix; a posting list holds
the words themselves (one word is stored bare). A query word's candidates from
all its probes are verified by rapidfuzz in one call per allowance, in C. A
middle third is probed only where the length difference lets it be: a query
as long as the term word moves it by at most one letter (see part_shifts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from rapidfuzz.distance import OSA
from rapidfuzz.process import extract

DELETION_MAX = 8  # words up to this length use symmetric deletions

Table = tuple[int, int]
"""Which posting table a key belongs to: (0, 0) for deletions, (term length,
part index) for the thirds of longer words."""
DELETIONS: Table = (0, 0)
Posting = str | tuple[str, ...]
Probe = tuple[dict[str, Posting], int, int]
"""A part table, and the slice of the query word to look up in it."""


def allowance(length: int) -> int:
    """Edits tolerated in a term word of this canonical length (DESIGN §4)."""
    if length >= 9:
        return 2
    if length >= 5:
        return 1
    return 0


def part_bounds(length: int) -> tuple[int, int, int, int]:
    """Where a two-edit word is cut in thirds."""
    return (0, length // 3, 2 * length // 3, length)


def part_shifts(edits: int, difference: int) -> tuple[int, ...]:
    """How far an intact middle part of a term word can have moved in a query
    word that is ``difference`` letters shorter, within ``edits`` edits: by the
    insertions before it, minus the deletions before it. The length difference
    fixes how many of each there can be (``difference`` = deletions −
    insertions), so a query as long as the term moves a part by at most one,
    and a query two letters shorter only leftwards."""
    shifts: set[int] = set()
    for deletions in range(edits + 1):
        insertions = deletions - difference
        if insertions >= 0 and insertions + deletions <= edits:
            shifts.update(range(-deletions, insertions + 1))
    return tuple(sorted(shifts))


def term_keys(word: str) -> set[tuple[Table, str]]:
    length = len(word)
    if length <= DELETION_MAX:
        keys = {(DELETIONS, word)}
        keys.update((DELETIONS, word[:i] + word[i + 1 :]) for i in range(length))
        return keys
    bounds = part_bounds(length)
    keys = {((length, i), word[bounds[i] : bounds[i + 1]]) for i in range(3)}
    # The word with the letters at a boundary swapped: a query with that
    # transposition and one more edit elsewhere still keeps one of these parts.
    for i in (1, 2):
        b = bounds[i]
        swapped = word[: b - 1] + word[b] + word[b - 1] + word[b + 1 :]
        for side in (i - 1, i):
            keys.add(((length, side), swapped[bounds[side] : bounds[side + 1]]))
    return keys


def _part_probe(
    length: int,
    table: dict[str, Posting],
    bounds: tuple[int, ...],
    index: int,
    shift: int,
) -> list[Probe]:
    """Where part ``index`` of a term word stands in a query word of ``length``:
    the first part at the start, the last at the end, a middle one at its
    offset moved by ``shift``. Empty when it would not fit."""
    size = bounds[index + 1] - bounds[index]
    if index == 0:
        start = 0
    elif index == len(bounds) - 2:
        start = length - size
    else:
        start = bounds[index] + shift
    if start < 0 or start + size > length:
        return []
    return [(table, start, start + size)]


def _posting(words: list[str]) -> Posting:
    return words[0] if len(words) == 1 else tuple(words)


class FuzzyIndex:
    """Immutable once built; safe to share across threads."""

    def __init__(self, words: Sequence[str], word_ids: Iterable[int]) -> None:
        postings: dict[Table, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self._ids: dict[str, int] = {}
        for word_id in sorted(set(word_ids)):
            word = words[word_id]
            if allowance(len(word)) == 0:
                continue
            self._ids[word] = word_id
            for table, key in term_keys(word):
                postings[table][key].append(word)
        # One small table per scheme and part: a lookup needs no key prefix,
        # and stays in a table of its own size.
        self._tables: dict[Table, dict[str, Posting]] = {
            table: {key: _posting(found) for key, found in keys.items()}
            for table, keys in postings.items()
        }
        self._deletions = self._tables.get(DELETIONS)
        self._plans = {n: self._compute_plan(n) for n in range(4, 48)}

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def _compute_plan(self, length: int) -> tuple[Probe, ...]:
        """The part probes for a query word of this length (deletions aside)."""
        probes: list[Probe] = []
        for term_length in range(max(DELETION_MAX + 1, length - 2), length + 3):
            edits = allowance(term_length)
            if abs(term_length - length) > edits:
                continue
            bounds = part_bounds(term_length)
            last = len(bounds) - 2
            shifts = part_shifts(edits, term_length - length)
            for index in range(last + 1):
                table = self._tables.get((term_length, index))
                if table is None:
                    continue
                for shift in shifts if 0 < index < last else (0,):
                    probes.extend(_part_probe(length, table, bounds, index, shift))
        unique = {(id(table), start, end): (table, start, end) for table, start, end in probes}
        return tuple(unique.values())

    def candidates(self, text: str, found: dict[int, int]) -> None:
        """Add every indexed word within its allowance of ``text`` to ``found``
        (word id -> edit distance)."""
        length = len(text)
        if length < 4:
            return
        # Candidates of every probe are gathered first and verified in one
        # rapidfuzz call per allowance: a word found through several keys is
        # compared once, and the per-call overhead is paid twice, not per key.
        near: list[str] = []  # from deletion keys: words of 5-8 letters, one edit
        far: list[str] = []  # from part keys: words of 9+ letters, two edits
        deletions = self._deletions
        if deletions is not None and length <= DELETION_MAX + 1:
            for key in (text, *[text[:i] + text[i + 1 :] for i in range(length)]):
                posting = deletions.get(key)
                if posting is None:
                    continue
                if isinstance(posting, str):
                    near.append(posting)
                else:
                    near.extend(posting)
        plan = self._plans.get(length)
        for table, start, end in self._compute_plan(length) if plan is None else plan:
            posting = table.get(text[start:end])
            if posting is None:
                continue
            if isinstance(posting, str):
                far.append(posting)
            else:
                far.extend(posting)
        ids = self._ids
        for pool, limit in ((near, allowance(DELETION_MAX)), (far, allowance(DELETION_MAX + 1))):
            if len(pool) == 1:
                distance = OSA.distance(text, pool[0], score_cutoff=limit)
                if distance <= limit:
                    found[ids[pool[0]]] = distance
            elif pool:
                for word, distance, _ in extract(
                    text, set(pool), scorer=OSA.distance, score_cutoff=limit, limit=None
                ):
                    found[ids[word]] = int(distance)
