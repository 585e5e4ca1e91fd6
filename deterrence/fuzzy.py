"""The candidate index for misspellings (DESIGN §4): every term word within the
edit allowance of a query word, found without comparing the query with every
term word, then verified with rapidfuzz's OSA distance.

Three schemes, by the term word's length, each chosen so that its keys are long
enough to stay selective at 100,000 terms:

- **5–8 letters, one edit** — symmetric deletions: a term word and a query word
  one edit apart (substitution, insertion, deletion or adjacent transposition)
  share the word itself or a one-letter deletion. The index holds each word and
  its deletions; a query looks up itself and its own deletions. (Halves would
  need fewer keys, but their 3–4-letter keys return long lists at 100,000 terms:
  p99 1.0 ms against 0.68 ms with deletions, for +30 MB.)
- **9–11 letters, two edits** — pairs of quarters: two edits leave two of four
  parts intact, and the index holds every pair of parts joined into one key.
  These words have a third of only 3 letters, and a 3-letter key returned
  hundreds of words at 100,000 terms (p99 426 µs); a pair has 4–6. Longer
  words keep thirds: six pairs need more probes than three thirds, and their
  thirds are selective already.
- **12+ letters, two edits** — thirds: two edits leave one of three parts
  intact, at its offset moved by the insertions and deletions before it.

A transposition across a boundary touches the two parts beside it, so the
index also holds the parts that the word with the letters at a boundary
swapped keeps intact (see part_keys). The deletions, and each group of parts,
have a table of their own, so posting lists stay short and a probe needs no key
prefix. A group's table serves every term length: where several term lengths
put a part at the same place in the query word, it is looked up once (a quarter
of the probes of a 9-letter word, half of those of a 14-letter one). A posting
list holds the words themselves (one word is stored bare). A query word's
candidates from all its probes are verified by rapidfuzz in one call per
allowance, in C. A part is probed only at the offsets
that the length difference and the edit allowance let it reach (group_shifts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import cache
from itertools import pairwise, product
from operator import itemgetter

from rapidfuzz.distance import OSA
from rapidfuzz.process import extract

DELETION_MIN = 5  # the shortest word with an edit allowed (see allowance)
DELETION_MAX = 8  # words up to this length use symmetric deletions
QUARTERS_MAX = 11  # two-edit words up to this length use pairs of quarters

Group = tuple[int, ...]
"""Parts of a term word whose join is one key: one third, or two quarters."""
THIRDS: tuple[Group, ...] = ((0,), (1,), (2,))
PAIRS: tuple[Group, ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))

Table = Group
"""Which posting table a key belongs to: () for deletions, else the group of
parts it joins."""
DELETIONS: Table = ()
Key = str | tuple[str, str]
"""A deletion or a third, or the two quarters of a pair (a tuple, so that a
probe cuts its key with one C call; the index shares their strings)."""
Posting = str | tuple[str, ...]
Cut = Callable[[str], Key]
"""What cuts a key out of a query word."""
Probe = tuple[Callable[[Key], Posting | None], Cut]
"""A group table's lookup, and what cuts its key out of the query word."""


def allowance(length: int) -> int:
    """Edits tolerated in a term word of this canonical length (DESIGN §4)."""
    if length > DELETION_MAX:
        return 2
    if length >= DELETION_MIN:
        return 1
    return 0


def part_bounds(length: int) -> tuple[int, ...]:
    """Where a two-edit word is cut: in four parts up to QUARTERS_MAX letters
    (each of two letters at least), in three beyond."""
    parts = 4 if length <= QUARTERS_MAX else 3
    return tuple(length * i // parts for i in range(parts + 1))


def groups(length: int) -> tuple[Group, ...]:
    return PAIRS if length <= QUARTERS_MAX else THIRDS


def group_shifts(
    group: Group, parts: int, edits: int, difference: int
) -> tuple[tuple[int, ...], ...]:
    """How far the intact parts of ``group`` can have moved in a query word
    that is ``difference`` letters shorter than the term word, within
    ``edits`` edits. A part moves by the insertions before it minus the
    deletions before it, and each of those is an edit: so the moves from the
    start (0) to each part in turn and to the end (−difference) add up to at
    most ``edits``. An insertion counts as touching the part after it (the
    last part, at the end), so the first part never moves, the last one always
    ends the word, and two neighbouring intact parts move together."""
    reach = range(-edits, edits + 1)
    options = [
        (0,) if index == 0 else (-difference,) if index == parts - 1 else reach for index in group
    ]
    found = []
    for shifts in product(*options):
        path = (0, *shifts, -difference)
        if sum(abs(b - a) for a, b in pairwise(path)) > edits:
            continue
        moves = zip(group, shifts, strict=True)
        if any(j == i + 1 and b != a for (i, a), (j, b) in pairwise(moves)):
            continue
        found.append(shifts)
    return tuple(found)


def _key(word: str, bounds: Sequence[int], group: Group) -> Key:
    first = group[0]
    part = word[bounds[first] : bounds[first + 1]]
    if len(group) == 1:
        return part
    second = group[1]
    return part, word[bounds[second] : bounds[second + 1]]


def _deletions(word: str) -> list[str]:
    """The word without each of its letters in turn."""
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


def _swap(word: str, at: int) -> str:
    return word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]


def part_keys(word: str) -> set[tuple[Table, Key]]:
    """The keys of a two-edit word (DELETION_MAX + 1 letters or more), each with
    the table of its group of parts."""
    length = len(word)
    bounds = part_bounds(length)
    last = len(bounds) - 2
    keys = {(group, _key(word, bounds, group)) for group in groups(length)}
    # A transposition at a boundary touches both parts beside it. With one more
    # edit, the swapped word keeps intact a third beside the swap (thirds), or
    # the two quarters beside it, unless two quarters away from it are intact
    # (pairs). Two transpositions at neighbouring boundaries leave only the
    # outer quarters, the first or the last of them swapped.
    for boundary in range(1, last + 1):
        swapped = _swap(word, bounds[boundary])
        if last == 2:
            beside: tuple[Group, ...] = ((boundary - 1,), (boundary,))
        else:
            beside = ((boundary - 1, boundary),)
            if boundary in (1, last):
                beside += ((0, last),)
        keys.update((group, _key(swapped, bounds, group)) for group in beside)
    return keys


def _word_keys(word: str) -> Iterable[tuple[Table, Key]]:
    """Where a word is indexed: one edit (most words), itself and its deletions;
    two edits, its part keys."""
    if len(word) <= DELETION_MAX:
        return ((DELETIONS, deletion) for deletion in {word, *_deletions(word)})
    return part_keys(word)


def _group_slices(
    length: int, bounds: Sequence[int], group: Group, shifts: tuple[int, ...]
) -> tuple[slice, ...] | None:
    """Where the parts of ``group`` stand in a query word of ``length``, moved
    by ``shifts``. None when they would not fit or would overlap."""
    slices: list[slice] = []
    for part, shift in zip(group, shifts, strict=True):
        start, end = bounds[part] + shift, bounds[part + 1] + shift
        if start < (slices[-1].stop if slices else 0) or end > length:
            return None
        slices.append(slice(start, end))
    return tuple(slices)


@cache
def _plan_layout(length: int) -> tuple[tuple[Group, Callable[[str], Key]], ...]:
    """Where a query word of this length is cut for each group's table, for
    every term length within reach: (group, cutter), each place once. It
    depends on no list, so it is worked out once per process, and a reload's
    unpickled index only binds its tables' lookups to it (working it out took
    3.6 ms of a 5,000-term reload, holding the interpreter lock)."""
    cuts: dict[tuple[Group, tuple[tuple[int, int], ...]], Callable[[str], Key]] = {}
    for term_length in range(max(DELETION_MAX + 1, length - 2), length + 3):
        edits = allowance(term_length)
        difference = term_length - length
        if abs(difference) > edits:
            continue
        bounds = part_bounds(term_length)
        for group in groups(term_length):
            for shifts in group_shifts(group, len(bounds) - 1, edits, difference):
                slices = _group_slices(length, bounds, group, shifts)
                if slices is not None:
                    place = (group, tuple((s.start, s.stop) for s in slices))
                    cuts.setdefault(place, itemgetter(*slices))
    return tuple((group, cut) for (group, _), cut in cuts.items())


class FuzzyIndex:
    """Immutable once built; safe to share across threads."""

    added: tuple[str, ...] = ()
    """Of an index made by :meth:`extended`: the words it added."""

    def __init__(self, words: Sequence[str], word_ids: Iterable[int]) -> None:
        postings: dict[Table, defaultdict[Key, list[str]]] = defaultdict(lambda: defaultdict(list))
        parts: dict[str, str] = {}  # one string for each part, however many pairs hold it
        self._ids: dict[str, int] = {}
        for word_id in sorted(set(word_ids)):
            word = words[word_id]
            if allowance(len(word)) == 0:
                continue
            self._ids[word] = word_id
            for table, key in _word_keys(word):
                if isinstance(key, tuple):
                    key = (parts.setdefault(key[0], key[0]), parts.setdefault(key[1], key[1]))
                postings[table][key].append(word)
        # One table for the deletions and one per group of parts: a lookup
        # needs no key prefix. One word is stored bare (Posting).
        self._tables: dict[Table, dict[Key, Posting]] = {
            table: {
                key: found[0] if len(found) == 1 else tuple(found) for key, found in keys.items()
            }
            for table, keys in postings.items()
            if keys
        }
        self.__setstate__((self._ids, self._tables))

    def extended(
        self,
        words: Sequence[str],
        word_ids: Iterable[int],
        pause: Callable[[], None],
        settle: Callable[[], None] = lambda: None,
    ) -> FuzzyIndex:
        """This index with the words of ``word_ids`` added, as a new index: the
        tables they add to are copies (a reload frees the old ones; ``pause()``
        after each), the other tables, the words and the postings shared. A word
        adds to a few of the tables: copying all of them cost CPU, and every copy
        was one more big dict for the cycle collector's next young collections
        to walk. ``settle()`` runs once the new postings exist, before they go
        into the copies (deterrence.collector.young_collection)."""
        ids = dict(self._ids)
        added_words: list[str] = []
        additions: dict[Table, dict[Key, Posting]] = {}
        for word_id in sorted(set(word_ids)):
            word = words[word_id]
            if allowance(len(word)) == 0 or word in ids:
                continue
            ids[word] = word_id
            added_words.append(word)
            for table, key in _word_keys(word):
                added = additions.setdefault(table, {})
                found = added.get(key) or self._tables.get(table, {}).get(key)
                added[key] = (
                    word
                    if found is None
                    else (*found, word)
                    if isinstance(found, tuple)
                    else (found, word)
                )
        settle()
        tables = dict(self._tables)
        for table, added in additions.items():
            keys = tables[table] = dict(tables.get(table, {}))
            keys.update(added.items())  # item by item: an empty dict would clone tracking
            pause()
        grown = FuzzyIndex.__new__(FuzzyIndex)
        grown._set_tables(ids, tables, self, changed=additions.keys())
        grown.added = tuple(added_words)
        return grown

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    # The plans are rebuilt, not pickled: their lookups and cutters would be
    # reconstructed one Python call each, as slowly as the plans are computed.
    def __getstate__(self) -> tuple[dict[str, int], dict[Table, dict[Key, Posting]]]:
        return self._ids, self._tables

    def __setstate__(self, state: tuple[dict[str, int], dict[Table, dict[Key, Posting]]]) -> None:
        self._set_tables(*state)

    def _set_tables(
        self,
        ids: dict[str, int],
        tables: dict[Table, dict[Key, Posting]],
        base: FuzzyIndex | None = None,
        changed: Collection[Table] = (),
    ) -> None:
        """With ``base`` (the index this one grew from), its probes of the tables
        not ``changed`` are shared, and so are its whole plans that read none of
        those: a probe is a bound method in a tuple, which a reload would otherwise
        leave by the hundred for the cycle collector's oldest generation, and so
        hasten its next full collection."""
        self._ids, self._tables = ids, tables
        self._deletions = tables.get(DELETIONS)
        self._plans = {}
        for length in range(4, 48):
            layout = _plan_layout(length)
            if base is None:
                self._plans[length] = self._compute_plan(length)
            elif not any(group in changed for group, _ in layout):
                self._plans[length] = base._plans[length]
            else:  # base's plan has a probe for each place whose table it had
                places = [place for place in layout if place[0] in base._tables]
                shared = {
                    place: probe
                    for place, probe in zip(places, base._plans[length], strict=True)
                    if place[0] not in changed
                }
                self._plans[length] = self._compute_plan(length, shared)

    def _compute_plan(
        self, length: int, shared: Mapping[tuple[Group, Cut], Probe] | None = None
    ) -> tuple[Probe, ...]:
        """The part probes for a query word of this length (deletions aside);
        those of ``shared`` as they are."""
        tables = self._tables
        return tuple(
            (shared and shared.get((group, cut))) or (table.get, cut)
            for group, cut in _plan_layout(length)
            if (table := tables.get(group)) is not None
        )

    def candidates_among(self, text: str, words: Sequence[str], found: dict[int, int]) -> None:
        """Add those of ``words`` (indexed words) within their allowance of
        ``text`` to ``found``: what :meth:`candidates` finds of them, by comparing
        each, cheaper than the index's lookups for a few words (a grown matcher
        completes a word's remembered candidates with those added since)."""
        near = extract(
            text, words, scorer=OSA.distance, score_cutoff=allowance(DELETION_MAX + 1), limit=None
        )
        for word, distance, _ in near:
            if distance <= allowance(len(word)):
                found[self._ids[word]] = int(distance)

    def candidates(self, text: str, found: dict[int, int]) -> None:
        """Add every indexed word within its allowance of ``text`` to ``found``
        (word id -> edit distance)."""
        length = len(text)
        if length < DELETION_MIN - 1:
            return
        # Candidates of every probe are gathered first and verified in one
        # rapidfuzz call per allowance: a word found through several keys is
        # compared once, and the per-call overhead is paid twice, not per key.
        near: list[str] = []  # from deletion keys: words of 5-8 letters, one edit
        far: list[str] = []  # from part keys: words of 9+ letters, two edits
        deletions = self._deletions
        if deletions is not None and length <= DELETION_MAX + 1:
            # The deletion keys are words of 5-8 letters and their deletions,
            # of 4-7: a key longer or shorter would be looked up in vain.
            keys = [text] if length <= DELETION_MAX else []
            if length >= DELETION_MIN:
                keys += _deletions(text)
            for key in keys:
                posting = deletions.get(key)
                if posting is None:
                    continue
                if isinstance(posting, str):
                    near.append(posting)
                else:
                    near.extend(posting)
        plan = self._plans.get(length)
        for lookup, cut in self._compute_plan(length) if plan is None else plan:
            posting = lookup(cut(text))
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
                within = extract(
                    text, set(pool), scorer=OSA.distance, score_cutoff=limit, limit=None
                )
                # Ties come in the set's order, which str hashes decide anew in every
                # process; the term a match reports must not (its first hit wins).
                for word, distance, _ in sorted(within, key=lambda item: ids[item[0]]):
                    found[ids[word]] = int(distance)
