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
(``zorblax!``, ``$ex``) are read both as punctuation and as leet letters.
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
    # Look-alikes also behind NFKC (mathematical Greek 𝛐, the micro sign µ) and
    # under diacritics (ῠ is υ with a breve).
    lookalike = (
        LOOKALIKES.get(ch)
        or LOOKALIKES.get(compatible)
        or LOOKALIKES.get(unicodedata.normalize("NFKD", ch)[:1])
    )
    decomposed = unicodedata.normalize("NFKD", ch)
    folded = decomposed.casefold()
    if folded != decomposed:
        flags |= Transform.CASE
    # casefold may produce characters that decompose further (e.g. ẞ → ss is fine,
    # but some produce combining sequences).
    folded = unicodedata.normalize("NFKD", folded)
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


_new_tuple = tuple.__new__
"""``_new_tuple(Token, (text, flags, (), 0, (), ()))`` is ``Token(text, flags)`` without
NamedTuple's ``__new__`` in Python (0.24 against 0.45 µs): the fast paths make a
token for every word."""


@dataclass(slots=True)
class _RawWord:
    chars: list[_Char] = field(default_factory=list)
    flags: int = 0
    inner: list[int] = field(default_factory=list)  # offsets of merged single letters
    spaces: list[int] = field(default_factory=list)  # those after whitespace (Token.spaces)


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


def _read_word(chars: list[_Char], flags: int) -> tuple[str, int] | None:
    """Steps 4, 5 and 8 for one word. None when it holds nothing readable."""
    plain = True
    has_letter = has_latin = False
    for c in chars:  # one pass: this runs for every word that is not plain ASCII
        if c.kind == LETTER:
            has_letter = True
            if c.lookalike is not None:
                plain = False
            if c.script == "LATIN":
                has_latin = True
        else:
            plain = False
    if plain:
        return "".join([c.char for c in chars]), flags  # the common case: plain letters
    if not has_letter:
        digits = "".join([c.char for c in chars if c.kind == DIGIT])
        return (digits, flags) if digits else None
    out: list[str] = []
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
        else:
            out.append(c.char)
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
        else:
            out.append(LEET.get(c.char, c.char))
    if not has_letter:
        return None
    return "".join(out), flags | Transform.LOOKALIKE


def _readings(word: _RawWord) -> Token | None:
    chars = word.chars
    # Symbols at the edges are read as punctuation first, as leet second.
    start, end = 0, len(chars)
    while start < end and chars[start].kind == SYMBOL:
        start += 1
    while end > start and chars[end - 1].kind == SYMBOL:
        end -= 1
    variants = [chars[start:end], chars] if (start, end) != (0, len(chars)) else [chars]
    readings: list[tuple[str, int]] = []
    inner: tuple[int, ...] = ()
    spaces: tuple[int, ...] = ()
    for candidate in variants:
        for reading in (_read_word(candidate, word.flags), _latin_reading(candidate, word.flags)):
            if reading is None or not reading[0]:
                continue
            text, collapsed_inner = _collapse(reading[0], tuple(word.inner))
            flags = reading[1] | (Transform.REPEATS if len(text) < len(reading[0]) else 0)
            if all(text != seen for seen, _ in readings):
                if not readings:
                    inner = collapsed_inner
                    if word.spaces:
                        spaces = _collapse(reading[0], tuple(word.spaces))[1]
                readings.append((text, flags))
    if not readings:
        return None
    (text, flags), *alternatives = readings
    inner = tuple(o for o in inner if 0 < o < len(text))
    spaces = tuple(o for o in spaces if 0 < o < len(text))
    return Token(text, flags, tuple(alternatives), inner=inner, spaces=spaces)


def _split_words(query: str) -> tuple[list[_RawWord], list[str], int]:
    """Split into raw words and the separator run before each word, and the
    flags of invisible characters or marks still waiting at the end for a
    letter to go to."""
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
            if kind in (SPACE, PUNCT):
                if chars:
                    words.append(current)
                    current, current_no_space = _RawWord(), None
                    chars = current.chars
                sep.append(c.char)
                continue
            if kind == LETTER:
                # Scripts without spaces never share a word with other letters.
                no_space = c.script in NO_SPACE_SCRIPTS
                if current_no_space is not None and no_space != current_no_space:
                    words.append(current)
                    current = _RawWord()
                    chars = current.chars
                    sep.append(" ")
                current_no_space = no_space
            if not chars:
                separators.append("".join(sep))
                sep = []
            chars.append(c)
            current.flags |= c.flags | pending_flags
            pending_flags = 0
    if chars:
        words.append(current)
    return words, separators, pending_flags


def _merge_spaced(words: list[_RawWord], separators: list[str]) -> None:
    """Step 7, in place: 3+ single-character words in a row become one word."""
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and _is_single(words[j]):
            j += 1
        if j - i >= 3 and any(c.kind == LETTER for w in words[i:j] for c in w.chars):
            merged = _RawWord(flags=Transform.SPACING)
            # Where whitespace separated letters, if something else separated others.
            tell_words = not all(" " in sep for sep in separators[i + 1 : j])
            for k, w in enumerate(words[i:j], start=i):
                if merged.chars:
                    merged.inner.append(len(merged.chars))
                    if tell_words and " " in separators[k]:
                        merged.spaces.append(len(merged.chars))
                merged.chars.extend(w.chars)
                merged.flags |= w.flags
            words[i:j] = [merged]
            del separators[i + 1 : j]
        i += 1


def _is_single(word: _RawWord) -> bool:
    """True when the word reads as one character (``a``, ``aa``, ``4``): decided
    on the reading, so that canonical output never holds a run that step 7
    would join on a second pass."""
    if len(word.chars) > 8 or word.chars[0].kind == SYMBOL:
        return False
    if len(word.chars) == 1:
        return True  # a letter or a digit reads as itself
    if len({c.char for c in word.chars}) > 2:
        return False  # no reading merges three different characters into one
    token = _readings(word)
    return token is not None and len(token.text) == 1


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
            return [_new_tuple(Token, (word, 0, (), 0, (), ())) for word in lowered.split()]
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
    return _new_tuple(Token, (text, text_flags, (), 0, (), ()))


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
    weak_before = False
    for word, sep in zip(raw_words, separators, strict=True):
        token = _readings(word)
        if token is None:
            # Nothing readable (a lone symbol): it separates like punctuation.
            weak_before = False
            continue
        if tokens and len(sep) == 1 and not sep.isspace() and weak_before and _has_letter(token):
            token = token._replace(join=Transform.SEPARATOR)
        tokens.append(token)
        weak_before = _has_letter(token)
    return tokens


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
        elif (
            index
            and parts
            and text
            and parts[-1]
            and parts[-1][-1] == text[0]
            and text[0].isalpha()
        ):
            text = text[1:]  # a repeated letter across a weak join collapses too
            flags |= Transform.REPEATS
        starts.append(length)
        parts.append(text)
        length += len(text)
        ends.append(length)
        flags |= token.flags
    return CanonicalText("".join(parts), tuple(tokens), tuple(starts), tuple(ends), flags)


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
