"""Canonicalization of terms and queries (DESIGN §4, steps 1–8).

Terms and queries go through the same code, so matching happens on canonical
forms. The result is a sequence of *tokens* (canonical words) together with the
way each token joins the previous one:

- ``STRONG``: whitespace, or punctuation that is not a lone character between
  two words with letters;
- ``WEAK``: a single punctuation character between letters (``zor-blax``): the
  two tokens are tried both apart and joined (step 6).

Runs of three or more single-character words (``z o r b l a x``) are merged
into one token (step 7) that remembers where its letters were, so a term can
still start at one of them (``a z o r b l a x``).

Ambiguous readings are kept as *alternatives* rather than guessed: a word made
wholly of Cyrillic or Greek look-alikes is canonical as itself (so Cyrillic
terms match) and has a Latin alternative; symbols at the edge of a word
(``zorblax!``, ``$ex``) are read both as punctuation and as leet letters, the
first as its text. Beside a spaced letter (``!t o z z``) that makes the letter
one of a run, which keeps the other reading as its *pieces*.

The canonical text is a fixed point: canonicalizing it again gives it back, so
a term kept in canonical form reads the same as a query.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple


class Transform:
    """What canonicalization had to undo; reported in ``Match.transforms``.
    Bit flags as plain ints: ``IntFlag`` arithmetic runs enum's Python code,
    and the flags are combined for every character of every query."""

    CASE = 1
    COMPATIBILITY = 2  # full-width, mathematical letters, ligatures (NFKC)
    INVISIBLE = 4  # zero-width, format and control characters
    DIACRITICS = 8
    LOOKALIKE = 16  # Greek / Cyrillic / Armenian letters read as Latin
    LEET = 32  # digits and symbols read as letters
    SEPARATOR = 64  # punctuation between letters read as absent
    SPACING = 128  # spaced single letters joined
    REPEATS = 256  # repeated letters collapsed
    EDIT = 512  # misspelling within the edit allowance (set by the matcher)


TRANSFORM_NAMES: dict[int, str] = {
    Transform.CASE: "case",
    Transform.COMPATIBILITY: "compatibility",
    Transform.INVISIBLE: "invisible",
    Transform.DIACRITICS: "diacritics",
    Transform.LOOKALIKE: "lookalike",
    Transform.LEET: "leet",
    Transform.SEPARATOR: "separator",
    Transform.SPACING: "spacing",
    Transform.REPEATS: "repeats",
    Transform.EDIT: "edit_distance",
}


@lru_cache(maxsize=2 * Transform.EDIT)  # every combination of the flags
def transform_names(flags: int) -> tuple[str, ...]:
    return tuple(name for flag, name in TRANSFORM_NAMES.items() if flags & flag)


# Step 5: digits and symbols inside a word with letters.
LEET = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
}
LEET_SYMBOLS = frozenset("@$!|")

# Step 4: look-alikes, keyed by the character *before* casefolding, because
# upper- and lower-case forms resemble different Latin letters (Η is H, η is n).
LOOKALIKES = {
    # Cyrillic capitals
    "А": "a", "В": "b", "Е": "e", "Ё": "e", "К": "k", "М": "m", "Н": "h", "О": "o",
    "Р": "p", "С": "c", "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ї": "i",
    "Ј": "j", "Ԁ": "d", "Ԛ": "q", "Ԝ": "w", "Һ": "h", "Ү": "y", "Ӏ": "l",
    # Cyrillic small letters
    "а": "a", "в": "b", "г": "r", "е": "e", "ё": "e", "и": "u", "й": "u", "к": "k",
    "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ш": "w", "щ": "w", "ъ": "b", "ь": "b", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ү": "y", "ӏ": "l", "ɡ": "g",
    # Greek capitals
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m",
    "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    # Greek small letters
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u",
    "ν": "v", "ο": "o", "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w",
    # Armenian
    "Օ": "o", "Ս": "u", "Տ": "s", "Լ": "l", "օ": "o", "ս": "u", "ո": "n", "հ": "h",
    "ց": "g", "զ": "q", "ա": "w", "յ": "j", "ք": "p", "ռ": "n",
}  # fmt: skip

# Step 2 beyond the Cf/Cc categories: default-ignorable code points that are
# letters or marks by category (Hangul fillers, variation selectors, CGJ …).
_EXTRA_IGNORABLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u3164\uffa0"
) | frozenset(chr(c) for c in range(0xFE00, 0xFE10))
_WHITESPACE_CONTROLS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")

# Scripts written without spaces: terms in them match anywhere.
NO_SPACE_SCRIPTS = frozenset(
    {"CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "THAI", "LAO", "KHMER", "MYANMAR"}
)
_LGC = frozenset({"LATIN", "GREEK", "CYRILLIC"})
_LOOKALIKE_SCRIPTS = frozenset({"GREEK", "CYRILLIC", "ARMENIAN"})

# Character kinds.
LETTER, DIGIT, SYMBOL, MARK, SPACE, PUNCT = range(6)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 1.2 µs, against 0.3
class _Char:
    """One character as read by steps 1–3. Shared through _read_char's cache, so
    never changed once made (a reading that differs is a new _Char)."""

    kind: int
    char: str
    script: str
    lookalike: str | None
    flags: int


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    if name.startswith("CJK") or name.startswith("IDEOGRAPHIC"):
        return "CJK"
    return name.split(" ", 1)[0]


@lru_cache(maxsize=16384)
def _read_char(ch: str) -> tuple[_Char, ...]:
    """Steps 1–3 for one character, cached: it is the hot loop."""
    category = unicodedata.category(ch)
    if ch in _WHITESPACE_CONTROLS:
        return (_Char(SPACE, " ", "", None, 0),)
    if category in ("Cf", "Cc", "Cs", "Co") or ch in _EXTRA_IGNORABLE:
        return (_Char(MARK, "", "", None, Transform.INVISIBLE),)
    if category == "Mn":
        # A combining mark on its own (even one casefold turns into a letter,
        # U+0345 → ι): the word decides whether it is a diacritic to drop.
        return (_Char(MARK, ch, "", None, 0),)
    flags = 0
    compatible = unicodedata.normalize("NFKC", ch)
    if compatible != unicodedata.normalize("NFC", ch):
        flags |= Transform.COMPATIBILITY
    decomposed = unicodedata.normalize("NFKD", ch)
    folded = decomposed.casefold()
    if folded != decomposed:
        flags |= Transform.CASE
    # casefold may produce characters that decompose further (e.g. ẞ → ss is fine,
    # but some produce combining sequences).
    folded = unicodedata.normalize("NFKD", folded)
    # Look-alikes also behind NFKC (mathematical Greek 𝛐, the micro sign µ) and
    # under diacritics (ῠ is υ with a breve). Last, the letter as it is written
    # out (Ω as ω): else a capital that resembles nothing would be written as a
    # small letter that does, and read differently a second time.
    lookalike = (
        LOOKALIKES.get(ch)
        or LOOKALIKES.get(compatible)
        or LOOKALIKES.get(decomposed[:1])
        or LOOKALIKES.get(folded[:1])
    )
    out: list[_Char] = []
    base_script = ""
    for c in folded:
        cat = unicodedata.category(c)
        if cat.startswith("L"):
            base_script = _script(c)
            out.append(_Char(LETTER, c, base_script, None, flags))
        elif cat == "Mn" and base_script in _LGC:
            if out:
                out[-1] = _Char(
                    LETTER, out[-1].char, base_script, None, out[-1].flags | Transform.DIACRITICS
                )
        elif cat in ("Mn", "Mc", "Me"):
            out.append(_Char(MARK, c, base_script, None, flags))
        elif "0" <= c <= "9":
            out.append(_Char(DIGIT, c, "", None, flags))
        elif cat == "Nd":
            out.append(_Char(LETTER, c, "", None, flags))  # other scripts' digits: kept as is
        elif c in LEET_SYMBOLS:
            out.append(_Char(SYMBOL, c, "", None, flags))
        elif cat.startswith("Z") or c.isspace():
            out.append(_Char(SPACE, " ", "", None, flags))
        elif cat in ("Cf", "Cc"):
            out.append(_Char(MARK, "", "", None, flags | Transform.INVISIBLE))
        else:
            out.append(_Char(PUNCT, c, "", None, flags))
    if lookalike is not None and len(out) == 1 and out[0].kind == LETTER:
        only = out[0]
        out[0] = _Char(LETTER, only.char, only.script, lookalike, only.flags)
    elif len(out) > 1:
        # Several letters (ᾨ is ωι): each resembles what it does written alone.
        for index, letter in enumerate(out):
            if letter.kind == LETTER and letter.char in LOOKALIKES:
                out[index] = _Char(
                    LETTER, letter.char, letter.script, LOOKALIKES[letter.char], letter.flags
                )
    return tuple(out)


class Token(NamedTuple):
    """One canonical word of a query or term (immutable, so tokens can be shared)."""

    text: str
    flags: int
    alternatives: tuple[tuple[str, int], ...] = ()
    """Other readings of the same word, each with its flags."""
    join: int = 0
    """How this token joins the previous one: 0 = strong boundary, else the
    Transform (SEPARATOR) that a join across it needs."""
    inner: tuple[int, ...] = ()
    """Offsets inside ``text`` where a spaced-letter word may start or end."""
    spaces: tuple[int, ...] = ()
    """Those of ``inner`` where the query had whitespace, when others had
    punctuation (``z.o.r b.l.a.x``): there the query separated words."""
    pieces: tuple[Token, ...] = ()
    """A run of spaced letters with symbols at their edges (``s h y z s k $i l``)
    read as step 7 reads it with those symbols as letters: ``shyzsk si l``. The
    runs among them have no ``inner``: their stretches are this run's already."""


_new_tuple = tuple.__new__
"""``_new_tuple(Token, (text, flags, (), 0, (), (), ()))`` is ``Token(text, flags)`` without
NamedTuple's ``__new__`` in Python (0.24 against 0.45 µs): the fast paths make a
token for every word."""


@dataclass(slots=True)
class _RawWord:
    chars: list[_Char] = field(default_factory=list)
    flags: int = 0
    inner: list[int] = field(default_factory=list)  # offsets of merged single letters
    spaces: list[int] = field(default_factory=list)  # those after whitespace (Token.spaces)
    pieces: tuple[Token, ...] = ()  # Token.pieces


_REPEATED_LETTER = re.compile(r"([^\W\d_])\1+")
_FIRST_GROUP = itemgetter(1)
"""The replacement for a repeated letter: a callable in C, where the template
``r"\1"`` runs re's Python code for every match (3 µs a word, in 3.11)."""
_DOUBLED = re.compile(r"(.)\1", re.DOTALL)
"""Any character twice in a row: a search for it is cheaper than for a
repeated letter, and rules that out for most words."""


def _collapse(text: str, offsets: tuple[int, ...] = ()) -> tuple[str, tuple[int, ...]]:
    """Step 8: runs of a repeated letter become one; ``offsets`` (positions in
    ``text``) are moved to the matching positions in the result."""
    if not offsets:
        if _DOUBLED.search(text) is None or _REPEATED_LETTER.search(text) is None:
            return text, ()  # the usual case, and a search is cheaper than a sub
        return _REPEATED_LETTER.sub(_FIRST_GROUP, text), ()
    out: list[str] = []
    kept_before: list[int] = []
    prev = ""
    for c in text:
        kept_before.append(len(out))
        if c == prev and c.isalpha():
            continue
        out.append(c)
        prev = c
    kept_before.append(len(out))
    return "".join(out), tuple(sorted({kept_before[o] for o in offsets}))


def _read_word(
    chars: list[_Char], flags: int, latin: bool = False, leet_latin: bool = True
) -> tuple[str, int] | None:
    """Steps 4, 5 and 8 for one word. None when it holds nothing readable.

    A digit or symbol read as a letter (step 5) is a Latin letter, so it puts the
    word's look-alikes in Latin too (step 4): ``а0`` reads ``ao``, never the mixed
    ``аo`` that a second reading would change. Not ``leet_latin``: the mixed
    reading, steps 4 and 5 in their order (an alternative: ``з0рбляк`` is one
    edit from a Cyrillic term). ``latin`` reads the word as if it had Latin
    letters: it is written together with one that has (step 6)."""
    plain = True
    has_letter = False
    has_latin = latin
    for c in chars:  # one pass: this runs for every word that is not plain ASCII
        if c.kind == LETTER:
            has_letter = True
            if c.lookalike is not None:
                plain = False
            if c.script == "LATIN":
                has_latin = True
        else:
            plain = False
            if leet_latin and c.char in LEET:
                has_latin = True
    if plain:
        return "".join([c.char for c in chars]), flags  # the common case: plain letters
    if not has_letter:
        digits = "".join([c.char for c in chars if c.kind == DIGIT])
        return (digits, flags) if digits else None
    out: list[str] = []
    latin_before = False  # the last letter was read as Latin: its marks go (step 3)
    for c in chars:
        kind = c.kind
        if kind in (DIGIT, SYMBOL):
            mapped = LEET.get(c.char)
            if mapped is None:
                out.append(c.char)
            else:
                out.append(mapped)
                flags |= Transform.LEET
        elif (
            kind == LETTER
            and has_latin
            and c.lookalike is not None
            and c.script in _LOOKALIKE_SCRIPTS
        ):
            out.append(c.lookalike)
            flags |= Transform.LOOKALIKE
            latin_before = True
            continue
        elif kind == MARK and latin_before:
            flags |= Transform.DIACRITICS
            continue
        else:
            out.append(c.char)
        latin_before = False
    return "".join(out), flags


def _latin_reading(chars: list[_Char], flags: int) -> tuple[str, int] | None:
    """A word wholly of Greek/Cyrillic/Armenian look-alikes, read as Latin."""
    if not chars or chars[0].script == "LATIN":
        return None
    out: list[str] = []
    has_letter = False
    for c in chars:
        if c.kind == LETTER:
            if c.lookalike is None or c.script not in _LOOKALIKE_SCRIPTS:
                return None  # a Latin letter, or one that resembles none
            has_letter = True
            out.append(c.lookalike)
        elif c.kind == MARK:
            flags |= Transform.DIACRITICS  # on a letter now Latin (step 3)
        else:
            out.append(LEET.get(c.char, c.char))
    if not has_letter:
        return None
    return "".join(out), flags | Transform.LOOKALIKE


_EDGE_LETTERS = 2
"""How many of the symbols at a word's edge, next to its letters, are tried as
letters one by one (``!$lorb``: ``slorb``); beyond that, all of them or none."""


def _edge_bounds(chars: list[_Char]) -> tuple[int, int]:
    """Where the word's core starts and ends: without the symbols at its edges."""
    start, end = 0, len(chars)
    while start < end and chars[start].kind == SYMBOL:
        start += 1
    while end > start and chars[end - 1].kind == SYMBOL:
        end -= 1
    return start, end


def _edge_cuts(edge: int, limit: int, step: int) -> list[int]:
    """The cuts of one edge's symbols, from the core outwards (``step`` -1 for the
    start, +1 for the end): all as punctuation first, all as letters last."""
    cuts = [edge + step * kept for kept in range(_EDGE_LETTERS + 1) if kept <= abs(limit - edge)]
    if cuts[-1] != limit:
        cuts.append(limit)
    return cuts


_LEET_LOOKALIKE = Transform.LEET | Transform.LOOKALIKE


def _offsets_in(offsets: list[int], first_char: int, reading: str) -> tuple[int, ...]:
    """``offsets`` in a word's characters as offsets in the reading of those from
    ``first_char`` on (its edge symbols cut), the ones that fall inside it."""
    return tuple(o - first_char for o in offsets if 0 < o - first_char < len(reading))


def _readings(word: _RawWord, latin: bool = False) -> Token | None:
    """The token of one word: its readings, the first one its text. Symbols at its
    edges are each a letter or punctuation (``$blix!``: ``blix``, ``sblixi``,
    ``sblix``, ``blixi``); all as punctuation is the text. ``latin``: see
    _read_word."""
    chars = word.chars
    if chars[0].kind != SYMBOL and chars[-1].kind != SYMBOL:
        variants = [(0, chars)]
    else:
        start, end = _edge_bounds(chars)
        variants = [
            (first, chars[first:last])
            for first in _edge_cuts(start, 0, -1)
            for last in _edge_cuts(end, len(chars), 1)
        ]
    readings: list[tuple[str, int]] = []
    inner: tuple[int, ...] = ()
    spaces: tuple[int, ...] = ()
    for first_char, candidate in variants:
        first = _read_word(candidate, word.flags, latin)
        found = [first, _latin_reading(candidate, word.flags)]
        if first is not None and not latin and first[1] & _LEET_LOOKALIKE == _LEET_LOOKALIKE:
            found.append(_read_word(candidate, word.flags, leet_latin=False))
        for reading in found:
            if reading is None or not reading[0]:
                continue
            text, collapsed_inner = _collapse(
                reading[0], _offsets_in(word.inner, first_char, reading[0])
            )
            flags = reading[1] | (Transform.REPEATS if len(text) < len(reading[0]) else 0)
            if all(text != seen for seen, _ in readings):
                if not readings:
                    inner = collapsed_inner
                    if word.spaces:
                        offsets = _offsets_in(word.spaces, first_char, reading[0])
                        spaces = _collapse(reading[0], offsets)[1]
                readings.append((text, flags))
    if not readings:
        return None
    (text, flags), *alternatives = readings
    inner = tuple(o for o in inner if 0 < o < len(text))
    spaces = tuple(o for o in spaces if 0 < o < len(text))
    return Token(text, flags, tuple(alternatives), inner=inner, spaces=spaces, pieces=word.pieces)


def _split_words(query: str) -> tuple[list[_RawWord], list[str], int]:
    """Split into raw words and the separator run before each word, and the
    flags of invisible characters or marks still waiting at the end for a
    letter to go to.

    A word of symbols only (``z o r ! b l a x``) has no letters to be read as
    (step 5), so it is punctuation: it goes into the separator. Digits and
    symbols are never in one word with letters of a script without spaces: a
    leet letter is Latin (``桥7`` is ``桥 7``; ``桥!鲸`` is ``桥鲸``, a weak join)."""
    words: list[_RawWord] = []
    separators: list[str] = []
    current = _RawWord()
    chars = current.chars  # the current word's characters (the hot loop appends here)
    current_no_space: bool | None = None
    sep: list[str] = []
    pending_flags = 0
    read_char = _read_char
    for ch in query:
        for c in read_char(ch):
            kind = c.kind
            if kind == MARK:
                if not c.char:
                    pending_flags |= c.flags
                elif chars and chars[-1].kind == LETTER and chars[-1].script not in _LGC:
                    chars.append(c)  # part of a letter in another script
                else:
                    pending_flags |= Transform.DIACRITICS
                continue
            if kind == SYMBOL and current_no_space:
                kind = PUNCT  # not a letter beside letters of a script without spaces
            if kind in (SPACE, PUNCT):
                if chars:
                    if chars[0].kind == SYMBOL and _symbols_only(chars):
                        sep = [separators.pop(), *[s.char for s in chars]]
                    else:
                        words.append(current)
                    current, current_no_space = _RawWord(), None
                    chars = current.chars
                sep.append(c.char)
                continue
            # Scripts without spaces never share a word with other letters.
            no_space = kind == LETTER and c.script in NO_SPACE_SCRIPTS
            if current_no_space is not None and no_space != current_no_space:
                if chars[0].kind == SYMBOL and _symbols_only(chars):
                    sep = [separators.pop(), *[s.char for s in chars]]
                else:
                    words.append(current)
                    sep.append(" ")
                current = _RawWord()
                chars = current.chars
            current_no_space = no_space
            if not chars:
                separators.append("".join(sep))
                sep = []
            chars.append(c)
            current.flags |= c.flags | pending_flags
            pending_flags = 0
    if chars and not (chars[0].kind == SYMBOL and _symbols_only(chars)):
        words.append(current)
    elif chars:
        separators.pop()
    return words, separators, pending_flags


def _symbols_only(chars: list[_Char]) -> bool:
    return all(c.kind == SYMBOL for c in chars)


def _merge_spaced(words: list[_RawWord], separators: list[str], edges: bool = True) -> None:
    """Step 7, in place: 3+ single-character words in a row become one word.

    A word is single when its letters are (``!t``, ``z!``): the symbols at its
    edges are then punctuation between the run's letters (``!t o z z l e``), and
    the run keeps, as its pieces, how it reads with them as letters (not
    ``edges``). A run is of letters of scripts with spaces or of scripts without
    (``a b c 桥 鲸 笔`` is ``abc 桥鲸笔``): written together, the two would part again."""
    i = 0
    while i < len(words):
        core = _single_core(words[i], edges)
        if core is None:
            i += 1
            continue
        no_space = words[i].chars[core[0]].script in NO_SPACE_SCRIPTS
        cores = [core]
        j = i + 1
        while j < len(words):
            core = _single_core(words[j], edges)
            if core is None or (words[j].chars[core[0]].script in NO_SPACE_SCRIPTS) != no_space:
                break
            cores.append(core)
            j += 1
        if j - i < 3 or not any(c.kind == LETTER for w in words[i:j] for c in w.chars):
            i = j  # a run from a later word of these would end at j too
            continue
        merged = _RawWord(flags=Transform.SPACING)
        # Where whitespace separated letters, if something else separated others.
        tell_words = not all(" " in sep for sep in separators[i + 1 : j])
        for k, (w, (start, end)) in enumerate(zip(words[i:j], cores, strict=True), start=i):
            if merged.chars:
                if edges:  # a piece's stretches are the whole run's already
                    merged.inner.append(len(merged.chars))
                if tell_words and " " in separators[k]:
                    merged.spaces.append(len(merged.chars))
            merged.chars.extend(w.chars[start:end])
            merged.flags |= w.flags
        if edges and any(
            _single_core(w, edges=False) is None
            for w in words[i:j]
            if w.chars[0].kind == SYMBOL or w.chars[-1].kind == SYMBOL
        ):
            run, run_separators = words[i:j], ["", *separators[i + 1 : j]]
            _merge_spaced(run, run_separators, edges=False)
            merged.pieces = tuple(_read_tokens(run, run_separators))
        words[i:j] = [merged]
        del separators[i + 1 : j]
        i += 1


def _single_core(word: _RawWord, edges: bool = True) -> tuple[int, int] | None:
    """Where the word's letters are, when they read as one character (``a``,
    ``aa``, ``4``, with ``edges`` ``!t``); None otherwise. Decided on the
    reading, so that canonical output never holds a run that step 7 would join
    on a second pass."""
    chars = word.chars
    if len(chars) == 1:
        return (0, 1) if chars[0].kind != SYMBOL else None  # a letter or a digit
    if edges and (chars[0].kind == SYMBOL or chars[-1].kind == SYMBOL):
        start, end = _edge_bounds(chars)
        core = chars[start:end]
    else:
        start, end, core = 0, len(chars), chars
    if len(core) > 8:
        return None
    if len(core) == 1:
        return start, end
    if len({c.char for c in core}) > 2:
        return None  # no reading merges three different characters into one
    reading = _read_word(core, word.flags)
    return (start, end) if reading is not None and len(_collapse(reading[0])[0]) == 1 else None


_PLAIN_QUERY = re.compile(r"[A-Za-z]{2,}(?: +[A-Za-z]{2,})*")


def _plain_tokens(query: str) -> list[Token] | None:
    """Fast path for the most common query: ASCII words of 2+ letters separated
    by spaces, where only steps 1 and 8 can change anything."""
    stripped = query.strip(" ")
    if not _PLAIN_QUERY.fullmatch(stripped):
        return None
    lowered = stripped.lower()
    case = Transform.CASE if lowered != stripped else 0
    if _DOUBLED.search(lowered) is None:  # the usual case: nothing to collapse
        if not case:
            return [_new_tuple(Token, (word, 0, (), 0, (), (), ())) for word in lowered.split()]
        return [
            Token(word, Transform.CASE if word != original else 0)
            for word, original in zip(lowered.split(), stripped.split(), strict=True)
        ]
    tokens = []
    for word, original in zip(lowered.split(), stripped.split(), strict=True):
        # ASCII letters only: a doubled character is a repeated letter.
        collapsed = (
            word if _DOUBLED.search(word) is None else _REPEATED_LETTER.sub(_FIRST_GROUP, word)
        )
        if len(collapsed) == 1:
            return None  # may belong to a run of spaced letters (step 7)
        flags = (Transform.CASE if word != original else 0) | (
            Transform.REPEATS if collapsed != word else 0
        )
        tokens.append(Token(collapsed, flags))
    return tokens


_TABLE_LIMIT = 16384
"""Characters the translate tables below remember (as many as _read_char's cache).
When they are full they start afresh, so that a flood of rare characters cannot
leave every character seen after it uncached for good."""


class _CharTable(dict[int, str]):
    """A ``str.translate`` table filled on first sight of each character, so that
    a whole query is read in one C call once its characters are known. The four
    tables below are filled together (_char_readings)."""

    __slots__ = ("_field",)

    def __init__(self, field: int) -> None:
        super().__init__()
        self._field = field

    def __missing__(self, code: int) -> str:
        readings = _char_readings(chr(code))
        for table, reading in zip(_CHAR_TABLES, readings, strict=True):
            if len(table) >= _TABLE_LIMIT:
                table.clear()
            table[code] = reading
        return readings[self._field]


# What a letter's class character says of it (the classes are Latin-1 characters,
# one cached object each, so a set of them is cheap). The flags a letter can
# carry keep their Transform bits.
_LETTER_FLAGS = Transform.CASE | Transform.COMPATIBILITY | Transform.DIACRITICS
_NO_SPACE = 4  # in a script written without spaces (Transform.INVISIBLE is never a letter's)
_SPACED = 16  # in any other script
_LATIN = 32  # reads as Latin letters
_LOOKALIKE_SCRIPT = 64  # Greek, Cyrillic or Armenian: it may stand for a Latin letter
_NOT_LETTERS = _NO_SPACE | _SPACED
"""A character that does not read as letters of one kind; as the classes of a
word are OR-ed together, a mix of scripts with and without spaces reads so too."""
_CLASS_BASE = 128


def _char_readings(ch: str) -> tuple[str, str, str, str]:
    """A character's class, its letters, its Latin letters (a look-alike's as the
    Latin letter it stands for) and the Latin letter it stands for ("" if none).
    What does not read as letters of one kind (marks, digits, symbols, spaces,
    punctuation, a mix of scripts with and without spaces) is read as itself: the
    words it is in take the general path."""
    if ch == " ":
        return " ", " ", " ", ""  # so that a query's classes and readings split as it does
    not_letters = chr(_CLASS_BASE | _NOT_LETTERS), ch, ch, ""
    chars = _read_char(ch)
    if not chars or any(c.kind != LETTER for c in chars):
        return not_letters
    no_space = {c.script in NO_SPACE_SCRIPTS for c in chars}
    if len(no_space) > 1:
        return not_letters
    flags = 0
    for c in chars:
        flags |= c.flags
    if flags & ~_LETTER_FLAGS:
        return not_letters  # never so; the general path reads it
    bits = flags | (_NO_SPACE if no_space.pop() else _SPACED)
    if any(c.script == "LATIN" for c in chars):
        bits |= _LATIN
    if any(c.script in _LOOKALIKE_SCRIPTS for c in chars):
        bits |= _LOOKALIKE_SCRIPT
        if len(chars) > 1:
            return not_letters  # several look-alikes in one (ᾨ is ωι): the general path
    only = chars[0]
    stands_for = (
        only.lookalike if len(chars) == 1 and only.script in _LOOKALIKE_SCRIPTS else None
    ) or ""
    letters = "".join([c.char for c in chars])
    return chr(_CLASS_BASE | bits), letters, stands_for or letters, stands_for


_LETTER_CLASSES = _CharTable(0)
_LETTERS = _CharTable(1)
_LATIN_LETTERS = _CharTable(2)
"""Look-alikes as the Latin letters they stand for, other letters as _LETTERS."""
_STANDS_FOR = _CharTable(3)
"""Look-alikes as the Latin letters they stand for; anything else dropped."""
_CHAR_TABLES = (_LETTER_CLASSES, _LETTERS, _LATIN_LETTERS, _STANDS_FOR)


def _letter_word(word: str, classes: str, letters: str) -> Token | None:
    """_readings of a word of letters only, from its characters' classes and
    readings (the word through _LETTER_CLASSES and _LETTERS): the same steps 4
    and 8, without the general path's objects. None when the word is not only
    letters, mixes scripts with and without spaces, or reads as one letter."""
    bits = 0
    for kind in set(classes):
        bits |= ord(kind)
    if bits & _NOT_LETTERS == _NOT_LETTERS:
        return None
    flags = bits & _LETTER_FLAGS
    alternative: str | None = None
    if bits & _LOOKALIKE_SCRIPT:
        stands_for = word.translate(_STANDS_FOR)
        if stands_for:
            if bits & _LATIN:
                # Step 4: look-alikes inside a word with Latin letters read as Latin.
                letters = word.translate(_LATIN_LETTERS)
                flags |= Transform.LOOKALIKE
            elif len(stands_for) == len(word):
                # A word wholly of look-alikes is also read as the Latin word it imitates.
                alternative = stands_for
    if alternative is None and _DOUBLED.search(letters) is None:
        text, text_flags = letters, flags  # the usual case: nothing to collapse
    else:
        text, text_flags = _collapsed(letters, flags)
    if len(text) < 2:
        return None  # step 7 may join it with its neighbours
    if alternative is not None:
        other, other_flags = _collapsed(alternative, flags | Transform.LOOKALIKE)
        if other != text:
            return Token(text, text_flags, ((other, other_flags),))
    return _new_tuple(Token, (text, text_flags, (), 0, (), (), ()))


def _collapsed(reading: str, flags: int) -> tuple[str, int]:
    """Step 8 on one reading, with REPEATS added to its flags when it applied."""
    text, _ = _collapse(reading)
    return text, flags | (Transform.REPEATS if len(text) < len(reading) else 0)


def _word_by_word(query: str) -> tuple[list[Token], bool] | None:
    """Fast path for the next most common query: words one space apart, each
    read on its own, and whether any word needed the general path.

    A word of letters in any script (with case, diacritics, compatibility forms
    or look-alikes) that reads as 2+ letters, none switching between scripts
    with and without spaces, is read from its characters' cached readings
    (_letter_word). Any other word (an apostrophe, a dot, a digit, a single
    letter) goes through the general path alone. Only two things cross a space
    there: a run of single characters (step 7), which a word of 2+ letters
    stops, and the flags of an invisible character or a mark that wait for the
    next letter. So two neighbouring words that need the general path, or one
    that ends with flags waiting, send the whole query there (None)."""
    stripped = query.strip(" ")
    if not stripped:
        return None
    # Each word's characters' classes and readings, for the whole query in two
    # C calls; a space is read as a space, so the three split alike.
    classes = stripped.translate(_LETTER_CLASSES).split(" ")
    letters = stripped.translate(_LETTERS).split(" ")
    tokens: list[Token] = []
    general = previous_general = False
    for word, word_classes, word_letters in zip(stripped.split(" "), classes, letters, strict=True):
        if not word:
            continue  # two spaces in a row
        token = _letter_word(word, word_classes, word_letters)
        if token is not None:
            tokens.append(token)
            previous_general = False
            continue
        if previous_general:
            return None
        word_tokens, pending = _general_tokens(word)
        if pending:
            return None
        tokens.extend(word_tokens)
        general = previous_general = True
    return tokens, general


def tokenize(query: str) -> list[Token]:
    """The canonical tokens of ``query``; never raises for any ``str``."""
    return _read_query(query)[0]


def _read_query(query: str) -> tuple[list[Token], bool]:
    """The tokens of ``query`` by the quickest path that reads it exactly, and
    whether some of them may join weakly (only the general path makes joins)."""
    plain = _plain_tokens(query)
    if plain is not None:
        return plain, False
    found = _word_by_word(query)
    return found if found is not None else (_tokenize(query), True)


def _tokenize(query: str) -> list[Token]:
    return _general_tokens(query)[0]


def _general_tokens(query: str) -> tuple[list[Token], int]:
    """The general path: the tokens, and the flags still waiting at the end for a
    letter (see _split_words)."""
    raw_words, separators, pending = _split_words(query)
    _merge_spaced(raw_words, separators)
    return _read_tokens(raw_words, separators), pending


def _read_tokens(raw_words: list[_RawWord], separators: list[str]) -> list[Token]:
    tokens: list[Token] = []
    words: list[_RawWord] = []  # each token's raw word
    weak_before = False
    group = 0  # where the tokens joined weakly to the last one begin
    for word, sep in zip(raw_words, separators, strict=True):
        token = _readings(word)
        if token is None:
            # Nothing readable: it separates like punctuation.
            weak_before = False
            continue
        if (
            tokens
            and len(sep) == 1
            and not sep.isspace()
            and weak_before
            and _has_letter(token)
            and _no_space(tokens[-1].text[0]) == _no_space(token.text[0])  # each is one or other
        ):
            token = token._replace(join=Transform.SEPARATOR)
        else:
            if len(tokens) - group > 1:
                _read_joined(tokens, words, group)
            group = len(tokens)
        tokens.append(token)
        words.append(word)
        weak_before = _has_letter(token)
    if len(tokens) - group > 1:
        _read_joined(tokens, words, group)
    return tokens


def _no_space(char: str) -> bool:
    """Whether a canonical character is of a script without spaces."""
    if char < "\u0e00":
        return False  # before Thai, the first of them
    return any(c.script in NO_SPACE_SCRIPTS for c in _read_char(char))


def _read_joined(tokens: list[Token], words: list[_RawWord], group: int) -> None:
    """Tokens ``group:`` are joined weakly, so they are also one word (step 6):
    if one of them has Latin letters, look-alikes in the others are read as Latin
    too (step 4). That reading becomes their text, so that the text written
    together reads the same a second time; what they read as alone stays an
    alternative."""
    if all(token.text.isascii() for token in tokens[group:]):
        return  # the usual case: no look-alike left to read
    latin = look_alike = False
    for word in words[group:]:
        start, end = _edge_bounds(word.chars)
        if _has_latin(word.chars[start:end]):
            latin = True
        elif any(
            c.lookalike is not None and c.script in _LOOKALIKE_SCRIPTS
            for c in word.chars[start:end]
        ):
            look_alike = True
    if not (latin and look_alike):
        return
    for index in range(group, len(tokens)):
        token = tokens[index]
        read = _readings(words[index], latin=True)
        if read is None or read.text == token.text:
            continue
        readings = [(token.text, token.flags), *token.alternatives, *read.alternatives]
        alternatives: dict[str, int] = {}
        for text, flags in readings:
            if text != read.text:
                alternatives.setdefault(text, flags)
        tokens[index] = read._replace(alternatives=tuple(alternatives.items()), join=token.join)


def _has_latin(chars: list[_Char]) -> bool:
    """Whether the word has a Latin letter, or a digit or symbol read as one."""
    return any(c.script == "LATIN" if c.kind == LETTER else c.char in LEET for c in chars)


def _has_letter(token: Token) -> bool:
    return any(c.isalpha() for c in token.text)


class CanonicalText(NamedTuple):
    """A query as the matcher sees it: tokens joined into one string.

    Tokens joined weakly are written together (``zor-blax`` → ``zorblax``);
    other tokens are separated by one space. ``starts`` and ``ends`` hold where
    each token begins and ends in ``text``.
    """

    text: str
    tokens: tuple[Token, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    flags: int


def canonical_text(query: str) -> CanonicalText:
    tokens, may_join = _read_query(query)
    return _joined_text(tokens) if may_join else _plain_text(tokens)


def _joined_text(tokens: list[Token]) -> CanonicalText:
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    length = 0
    flags = 0
    for index, token in enumerate(tokens):
        text = token.text
        if index and not token.join:
            parts.append(" ")
            length += 1
        elif index and text and (last := _last_written(parts)) == text[0] and last.isalpha():
            text = text[1:]  # a repeated letter across a weak join collapses too
            flags |= Transform.REPEATS
        starts.append(length)
        parts.append(text)
        length += len(text)
        ends.append(length)
        flags |= token.flags
    return CanonicalText("".join(parts), tuple(tokens), tuple(starts), tuple(ends), flags)


def _last_written(parts: list[str]) -> str:
    """The last character of ``parts`` (a token's whole text may have collapsed
    into the one before it: ``ab-b-bc``)."""
    for part in reversed(parts):
        if part:
            return part[-1]
    return ""


def _plain_text(tokens: list[Token]) -> CanonicalText:
    """``canonical_text`` of fast-path tokens: words one space apart, nothing
    joined."""
    starts: list[int] = []
    ends: list[int] = []
    length = 0
    flags = 0
    for token in tokens:
        starts.append(length)
        length += len(token.text)
        ends.append(length)
        length += 1
        flags |= token.flags
    return CanonicalText(
        " ".join(token.text for token in tokens),
        tuple(tokens),
        tuple(starts),
        tuple(ends),
        flags,
    )


def canonicalize(text: str) -> str:
    """The canonical form of ``text`` (idempotent)."""
    return canonical_text(text).text


def term_words(term: str) -> tuple[str, ...]:
    """The canonical words of a term: weak joins count as word breaks here, so
    ``zor-blax`` in a list means the two words ``zor blax`` (which also match
    joined, as every multi-word term does)."""
    return tuple(token.text for token in tokenize(term))


def is_no_space_script(text: str) -> bool:
    """True when the letters of ``text`` are in scripts written without spaces."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(_script(c) in NO_SPACE_SCRIPTS for c in letters)
