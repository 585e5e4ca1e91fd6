"""Measure how well the matcher keeps the promises of DESIGN §4 (targets: §7).

Nothing here uses a real search term. Terms are *invented*: pronounceable nonsense
words built from syllables by a seeded RNG and checked against wordfreq's top lists,
so that none is a real word in any query language and none lies within the
misspelling allowance of a common word (otherwise an innocent query matching it would
be the contract at work, not a false positive). Negatives that need real words, such
as "a short term never matches inside a longer word", use innocuous stand-ins: with
``lime`` on a list, ``sublime`` must not match.

    from deterrence.evaluation import EvalConfig, evaluate, format_report
    print(format_report(evaluate(EvalConfig(seed=7))))

*Recall classes* hide one term behind one evasion of §4 (two at once for ``pairs``).
*False-positive classes* are innocent queries built from common words in six
languages, and near misses the contract says must not match. For a given config the
whole evaluation is deterministic. It needs the optional dependency ``wordfreq``.

The module deliberately does not use :mod:`deterrence.text`: its own ``plain`` form
(casefold, strip diacritics, collapse repeats) decides what the matcher should do, so
a bug in canonicalization cannot hide itself by agreeing with its own test data.
"""

from __future__ import annotations

import functools
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz import process
from rapidfuzz.distance import OSA

from deterrence.lists import Rule, Term, TermList
from deterrence.matcher import Match, Matcher

Script = Literal["latin", "cyrillic", "cjk"]
Kind = Literal["recall", "false_positive"]

RECALL_OVERALL_TARGET = 0.99
RECALL_CLASS_TARGET = 0.97
FALSE_POSITIVE_TARGET = 0.001

QUERY_LANGUAGES = ("en", "de", "fr", "es", "ru", "zh")
LATIN_LANGUAGES = ("en", "de", "fr", "es")
_SPACED_LANGUAGES = ("en", "de", "fr", "es", "ru")

# Plain names of the crime, as shipped lists hold them (see keyword_lists/).
GENERIC_NAMES = (
    "child sexual abuse material",
    "child sexual abuse imagery",
    "child abuse images",
    "csam",
)

# Innocuous real words standing in for short terms in structural negatives.
STAND_INS = (
    "lime", "art", "pin", "ton", "ear", "ring", "land", "cat", "tea", "rose",
    "mint", "oil", "sun", "hat", "bar", "kit",
)  # fmt: skip

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class EvalConfig:
    """Sizes of one evaluation run. The defaults are the full evaluation (§7)."""

    seed: int = 20261122
    list_terms: int = 2000
    """Invented terms on the main list (plus :data:`GENERIC_NAMES`)."""
    per_class: int = 400
    """Queries per recall class and per near-miss negative class."""
    innocent_queries: int = 20_000
    """Innocent queries, shared evenly by :data:`QUERY_LANGUAGES`."""
    stand_in_words: int = 3000
    """Real words containing a stand-in, checked not to match it."""
    query_top: int = 20_000
    """Innocent queries are built from each language's this many commonest words."""
    known_top: int = 100_000
    """Invented words are checked not to be among this many words of any language."""


# -- plain forms ----------------------------------------------------------------

_REPEATS = re.compile(r"(.)\1+", re.DOTALL)


def collapse(text: str) -> str:
    """Runs of a repeated character become one (``zorrrb`` → ``zorb``)."""
    return _REPEATS.sub(r"\1", text)


def plain(word: str) -> str:
    """Casefolded, diacritics stripped, repeats collapsed: how this module compares
    words when it decides what the matcher should do."""
    if word.isascii():
        return collapse(word.lower())
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return collapse("".join(c for c in decomposed if not unicodedata.combining(c)))


def allowance(length: int) -> int:
    """Edits a term word of this canonical length tolerates (DESIGN §4)."""
    return 2 if length >= 9 else 1 if length >= 5 else 0


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _deletes2(word: str) -> set[str]:
    once = _deletes(word)
    twice: set[str] = set()
    for shorter in once:
        twice |= _deletes(shorter)
    return once | twice


class _Neighbourhood:
    """Answers "could this word be within the fuzzy allowance of one of mine?".

    A symmetric-delete index: two words within *k* edits (OSA) share a string
    obtained by deleting at most *k* characters from each. It may say yes for a
    word slightly further away, never no for a near one.
    """

    def __init__(self) -> None:
        self._one: set[str] = set()
        self._two: set[str] = set()

    def add(self, word: str) -> None:
        if len(word) < 4:  # words of 3 letters or fewer are matched exactly, by anyone
            return
        self._one.add(word)
        self._one |= _deletes(word)
        if len(word) >= 7:  # only words of 7+ can be within 2 edits of a 9+ word
            self._two.add(word)
            self._two |= _deletes2(word)

    def near(self, word: str) -> bool:
        if len(word) < 4:
            return False
        if word in self._one or not self._one.isdisjoint(_deletes(word)):
            return True
        if len(word) < 7 or not self._two:
            return False
        return word in self._two or not self._two.isdisjoint(_deletes2(word))


def _top(lang: str, count: int) -> list[str]:
    import wordfreq  # optional dependency (extras "lint" and "test")

    return [str(word) for word in wordfreq.top_n_list(lang, count)]


_ASCII_WORD = re.compile(r"[a-z]+")
_HAN = re.compile(r"[\u4e00-\u9fff]+")


def _is_han(text: str) -> bool:
    return _HAN.fullmatch(text) is not None


class Vocabulary:
    """Real words from wordfreq: where innocent queries come from, and what
    invented words must stay clear of."""

    def __init__(self, query_top: int = 20_000, known_top: int = 100_000) -> None:
        self.query_words: dict[str, tuple[str, ...]] = {}
        known: set[str] = set()
        latin: dict[str, str] = {}  # plain form -> the commonest real spelling
        self._near = _Neighbourhood()
        for lang in QUERY_LANGUAGES:
            words = _top(lang, max(query_top, known_top))
            self.query_words[lang] = tuple(
                w for w in words[:query_top] if any(c.isalpha() for c in w)
            )
            if lang == "zh":
                self._zh_blob = "\n".join(words)
                known.update(plain(w) for w in words if w.isascii())  # Latin tokens
                continue
            for rank, word in enumerate(words[:known_top]):
                form = plain(word)
                known.add(form)
                if rank < query_top:
                    self._near.add(form)
                if lang in LATIN_LANGUAGES and word.isalpha() and _ASCII_WORD.fullmatch(form):
                    latin.setdefault(form, word)
        self.known = frozenset(known)
        self.latin_words: Mapping[str, str] = latin
        self._known_blob = "\n".join(known)  # any order: only searched with `in`
        self.latin_fillers = tuple(
            sorted(
                {
                    w
                    for lang in LATIN_LANGUAGES
                    for w in self.query_words[lang]
                    if len(w) >= 2 and w.isalpha() and _ASCII_WORD.fullmatch(plain(w))
                }
            )
        )
        self.russian_fillers = tuple(
            sorted({w for w in self.query_words["ru"] if len(w) >= 2 and w.isalpha()})
        )
        self.han_fillers = tuple(sorted({w for w in self.query_words["zh"] if _is_han(w)}))
        pool: dict[str, None] = {}
        for word in self.query_words["zh"]:
            for char in word:
                if _is_han(char):
                    pool[char] = None
        self.han_pool = tuple(pool)[:2500]

    def clear(self, word: str) -> bool:
        """True when ``word`` (a plain form) is no real word, nor within its fuzzy
        allowance of a common one."""
        if word in self.known:
            return False
        return len(word) <= 4 or not self._near.near(word)

    def inside_a_word(self, fragment: str) -> bool:
        return fragment in self._known_blob

    def inside_chinese(self, fragment: str) -> bool:
        return fragment in self._zh_blob


@functools.cache
def load_vocabulary(query_top: int = 20_000, known_top: int = 100_000) -> Vocabulary:
    """The vocabulary, built once per process (a few seconds)."""
    return Vocabulary(query_top, known_top)


# -- invented words and terms -----------------------------------------------------

_LATIN_ONSETS = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
    "gr", "kr", "pl", "tr", "st", "sk", "zl", "kv", "qu", "x", "j", "th", "bl", "fr",
    "gl", "vr", "zr", "sn", "kl", "pr", "w", "h", "ch", "sh",
)  # fmt: skip
_LATIN_NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "y", "ai", "ei", "ou", "ia")
_LATIN_CODAS = (
    "", "", "", "", "n", "r", "l", "x", "k", "m", "s", "z", "rb", "lt", "nd", "sk", "rk",
    "lx", "v", "t", "g", "b", "p",
)  # fmt: skip
_CYRILLIC_ONSETS = (
    "б", "в", "г", "д", "ж", "з", "к", "л", "м", "н", "п", "р", "с", "т", "ф", "х", "ц",
    "ч", "ш", "бр", "гр", "кр", "пл", "тр", "ст", "ск", "зл", "кв", "дв", "шм", "хр",
)  # fmt: skip
_CYRILLIC_NUCLEI = ("а", "е", "и", "о", "у", "ы", "я", "ю", "э")
_CYRILLIC_CODAS = ("", "", "", "н", "р", "л", "к", "м", "с", "з", "х", "ш", "рт", "нк")
_KATAKANA = (
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"
    "ガギグゲゴザジズゼゾダデドバビブベボパピプペポ"
)

LATIN_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
CYRILLIC_ALPHABET = "абвгдежзиклмнопрстуфхцчшщыэюя"


@dataclass(frozen=True)
class InventedTerm:
    """A term made up for testing: lower case, words separated by one space."""

    text: str
    script: Script = "latin"
    fuzzy: bool = True
    substring: bool = False

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.text.split(" "))

    def as_term(self) -> Term:
        return Term(self.text, fuzzy=self.fuzzy, substring=self.substring)


class WordForge:
    """Invents words: unique, never real, and (with ``spread``) never within the
    fuzzy allowance of each other, so each query can only match what it meant to."""

    def __init__(self, rng: random.Random, vocabulary: Vocabulary, *, spread: bool = True) -> None:
        self.rng = rng
        self.vocabulary = vocabulary
        self.spread = spread
        self._used: set[str] = set()
        self._mine = _Neighbourhood()

    def _accept(self, word: str) -> bool:
        if word in self._used or not self.vocabulary.clear(word):
            return False
        if self.spread and self._mine.near(word):
            return False
        self.claim(word)
        return True

    def claim(self, word: str) -> None:
        """Reserve a form (a word, or a phrase's joined form) against later words."""
        self._used.add(word)
        if self.spread:
            self._mine.add(word)

    def _syllables(
        self, onsets: Sequence[str], nuclei: Sequence[str], codas: Sequence[str], length: int
    ) -> str:
        word = ""
        while len(word) < length:
            word += self.rng.choice(onsets) + self.rng.choice(nuclei) + self.rng.choice(codas)
        return word

    def latin(self, min_len: int, max_len: int) -> str:
        for _ in range(10_000):
            length = self.rng.randint(min_len, max_len)
            word = self._syllables(_LATIN_ONSETS, _LATIN_NUCLEI, _LATIN_CODAS, length)
            if len(word) <= max_len and collapse(word) == word and self._accept(word):
                return word
        raise RuntimeError("cannot invent another Latin word; the generator is exhausted")

    def cyrillic(self, min_len: int, max_len: int) -> str:
        for _ in range(10_000):
            length = self.rng.randint(min_len, max_len)
            word = self._syllables(_CYRILLIC_ONSETS, _CYRILLIC_NUCLEI, _CYRILLIC_CODAS, length)
            if len(word) <= max_len and collapse(word) == word and self._accept(word):
                return word
        raise RuntimeError("cannot invent another Cyrillic word; the generator is exhausted")

    def han(self) -> str:
        for _ in range(10_000):
            word = "".join(self.rng.choices(self.vocabulary.han_pool, k=self.rng.randint(3, 4)))
            if word not in self._used and not self.vocabulary.inside_chinese(word):
                self._used.add(word)
                return word
        raise RuntimeError("cannot invent another Han term")

    def katakana(self) -> str:
        for _ in range(10_000):
            word = "".join(self.rng.choices(_KATAKANA, k=self.rng.randint(3, 5)))
            if collapse(word) == word and word not in self._used:
                self._used.add(word)
                return word
        raise RuntimeError("cannot invent another Katakana term")

    def phrase(self, words: int, min_len: int, max_len: int) -> str | None:
        """A multi-word phrase whose joined form is clear too (or None)."""
        parts = [self.latin(min_len, max_len) for _ in range(words)]
        joined = "".join(parts)
        if joined in self._used or not self.vocabulary.clear(joined):
            return None
        self.claim(joined)
        return " ".join(parts)


def invented_terms(
    forge: WordForge,
    count: int,
    *,
    pool: Sequence[str] = (),
    cyrillic_share: float = 0.05,
    cjk_share: float = 0.05,
    substring_share: float = 0.05,
    exact_share: float = 0.10,
) -> list[InventedTerm]:
    """``count`` invented terms shaped like a real list: mostly Latin, 45 % one
    word, 40 % two, 15 % three; some Cyrillic and CJK; some ``substring`` and some
    ``fuzzy = false``. With a ``pool``, phrases reuse its words (as large real lists
    do) instead of inventing fresh ones."""
    rng = forge.rng
    terms: list[InventedTerm] = []
    seen: set[str] = set()

    def pooled_phrase(words: int) -> str | None:
        parts = [rng.choice(pool) for _ in range(words)]
        text, joined = " ".join(parts), "".join(parts)
        if len(set(parts)) < words or text in seen or joined in seen:
            return None
        seen.add(joined)
        return text

    while len(terms) < count:
        roll = rng.random()
        if roll < cyrillic_share:
            words = [forge.cyrillic(4, 10) for _ in range(1 if rng.random() < 0.7 else 2)]
            terms.append(InventedTerm(" ".join(words), "cyrillic"))
            continue
        if roll < cyrillic_share + cjk_share:
            text = forge.han() if rng.random() < 0.5 else forge.katakana()
            terms.append(InventedTerm(text, "cjk"))
            continue
        fuzzy = rng.random() >= exact_share
        size = rng.choices((1, 2, 3), weights=(45, 40, 15))[0]
        if size == 1:
            if rng.random() < substring_share / 0.45:
                word = forge.latin(6, 9)
                if not forge.vocabulary.inside_a_word(word):
                    terms.append(InventedTerm(word, fuzzy=rng.random() < 0.5, substring=True))
            else:
                terms.append(InventedTerm(forge.latin(4, 12), fuzzy=fuzzy))
            continue
        phrase = pooled_phrase(size) if len(pool) > size else forge.phrase(size, 3, 10)
        if phrase is not None and phrase not in seen:
            seen.add(phrase)
            terms.append(InventedTerm(phrase, fuzzy=fuzzy))
    return terms


# -- perturbations ------------------------------------------------------------------

DIGIT_LEET = {"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7", "b": "8", "g": "9"}
SYMBOL_LEET = {"a": "@", "s": "$", "i": "!", "l": "|"}
CYRILLIC_LOOKALIKES = {
    "a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і",
    "j": "ј", "s": "ѕ", "h": "һ",
}  # fmt: skip
GREEK_LOOKALIKES = {
    "a": "α", "i": "ι", "k": "κ", "o": "ο", "p": "ρ", "u": "υ", "v": "ν", "x": "χ",
}  # fmt: skip
# One punctuation character (Unicode category P*) between letters.
PUNCTUATION = "-._*,/:;'#&"
PHRASE_SEPARATORS = "-._/+"
INVISIBLES = (
    "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff",  # ZWSP ZWNJ ZWJ WJ SHY BOM
    "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",  # bidi controls
    "\u2066", "\u2067", "\u2068", "\u2069", "\u061c",
    "\u180e", "\u034f", "\ufe0f", "\u2061", "\u2062", "\u2063", "\u2064", "\U000e0041",
    "\x00", "\x01", "\x07", "\x1b", "\x7f", "\x80", "\x9f",  # C0 / C1 controls
)  # fmt: skip
COMBINING_MARKS = (
    "\u0300", "\u0301", "\u0302", "\u0303", "\u0304", "\u0306", "\u0307", "\u0308",
    "\u030a", "\u030b", "\u030c", "\u0323", "\u0327", "\u0328",
)  # fmt: skip
_CYRILLIC_MARKS = ("\u0306", "\u0308", "\u0301", "\u0300")


def _math_alphabets() -> dict[str, dict[str, str]]:
    """Mathematical alphanumeric letters by style (𝐛𝐨𝐥𝐝, 𝓈𝒸𝓇𝒾𝓅𝓉, 𝔣𝔯𝔞𝔨𝔱𝔲𝔯 …), holes in
    the Unicode block filled from Letterlike Symbols (ℎ, ℯ, ℬ …)."""
    styles: dict[str, dict[str, str]] = {}
    name_pattern = re.compile(r"(?:MATHEMATICAL )?(.+) (?:SMALL|CAPITAL) [A-Z]")
    aliases = {"BLACK-LETTER": "FRAKTUR"}
    candidates = [*range(0x1D400, 0x1D6A4), *range(0x2100, 0x2150)]
    for code in candidates:
        char = chr(code)
        letter = unicodedata.normalize("NFKC", char)
        if len(letter) != 1 or not ("a" <= letter.lower() <= "z") or letter == char:
            continue
        name = unicodedata.name(char, "")
        found = name_pattern.fullmatch(name)
        style = "ITALIC" if name == "PLANCK CONSTANT" else found.group(1) if found else None
        if style is not None:
            styles.setdefault(aliases.get(style, style), {}).setdefault(letter, char)
    return {style: table for style, table in styles.items() if len(table) == 52}


def _math_greek() -> dict[str, dict[str, str]]:
    """Mathematical Greek letters by style (𝛂 for α), for look-alikes written in them."""
    styles: dict[str, dict[str, str]] = {}
    for code in range(0x1D6A8, 0x1D7CA):
        char = chr(code)
        found = re.fullmatch(r"MATHEMATICAL (.+) (?:SMALL|CAPITAL) \w+", unicodedata.name(char, ""))
        if found:
            styles.setdefault(found.group(1), {})[unicodedata.normalize("NFKC", char)] = char
    return styles


MATH_ALPHABETS = _math_alphabets()
MATH_GREEK = _math_greek()
MATH_STYLES = tuple(sorted(MATH_ALPHABETS))

_HALFWIDTH_KATAKANA = {
    unicodedata.normalize("NFKC", chr(code)): chr(code) for code in range(0xFF66, 0xFF9E)
}
_HALFWIDTH_MARKS = {"\u3099": "\uff9e", "\u309a": "\uff9f"}


def _units(text: str) -> list[str]:
    """Characters with their combining marks attached."""
    units: list[str] = []
    for char in text:
        if units and unicodedata.combining(char):
            units[-1] += char
        else:
            units.append(char)
    return units


def _has_latin(word: str) -> bool:
    return any(c.isascii() and c.isalpha() for c in word)


_WORD_BREAKS = re.compile("([ " + re.escape(PHRASE_SEPARATORS) + "]+)")


def _word_parts(text: str) -> list[str]:
    """Words at even indices, the separators between them at odd ones."""
    return _WORD_BREAKS.split(text)


Transform = Callable[[random.Random, str], str | None]


def case_changes(rng: random.Random, text: str) -> str | None:
    """Upper-case all letters, initials, or letters at random. A Greek or Cyrillic
    look-alike inside a Latin word keeps its case: ``υ`` reads as u, ``Υ`` as Y."""
    style = rng.randrange(3)
    out: list[str] = []
    for word in text.split(" "):
        latin = _has_latin(word)
        chars = [
            c.upper()
            if (c.isascii() or not latin)
            and (style == 0 or (style == 1 and i == 0) or (style == 2 and rng.random() < 0.5))
            else c
            for i, c in enumerate(word)
        ]
        out.append("".join(chars))
    changed = " ".join(out)
    return changed if changed != text else None


def _leet(rng: random.Random, text: str, table: Mapping[str, str], interior: bool) -> str | None:
    parts = [list(w) for w in _word_parts(text)]
    spots = [
        (wi, ci)
        for wi, word in enumerate(parts)
        for ci, char in enumerate(word)
        if wi % 2 == 0 and char in table and (not interior or 0 < ci < len(word) - 1)
    ]
    if not spots:
        return None
    for wi, ci in rng.sample(spots, rng.randint(1, min(3, len(spots)))):
        parts[wi][ci] = table[parts[wi][ci]]
    if not all(_has_latin("".join(w)) for w in parts[::2] if w):
        return None  # a word of digits only is a number (§4 step 5)
    return "".join("".join(w) for w in parts)


def leet_digits(rng: random.Random, text: str) -> str | None:
    return _leet(rng, text, DIGIT_LEET, interior=False)


def leet_symbols(rng: random.Random, text: str) -> str | None:
    return _leet(rng, text, SYMBOL_LEET, interior=True)


def spaced_letters(rng: random.Random, text: str) -> str | None:
    words = [_units(w) for w in text.split(" ") if w]
    if sum(len(w) for w in words) < 3:
        return None
    if len(words) == 1 or rng.random() < 0.5:
        return " ".join(u for w in words for u in w)
    return "  ".join(" ".join(w) for w in words)


EDGE_SYMBOLS = "@$!|"


def edge_symbols(rng: random.Random, text: str) -> str | None:
    """One or two of ``@ $ ! |`` beside a word, which §4 reads both as letters and
    as punctuation: at the edge of a word (``zorblax!``), of a letter spelt out
    with spaces or with one punctuation mark (``!z o r b``, ``z.o.r!.b``), or
    alone between them (``z o r ! b``)."""
    words = text.split(" ")
    style = rng.randrange(3) if len(text.replace(" ", "")) >= 3 else 0
    if style == 0:
        units, gaps = words, [" "] * (len(words) - 1)
    else:
        mark = " " if style == 1 else rng.choice(PUNCTUATION)
        units, gaps = [], []
        for index, word in enumerate(words):
            letters = _units(word)
            if index:
                gaps.append(rng.choice((" ", "  ")))
            units.extend(letters)
            gaps.extend([mark] * (len(letters) - 1))
    for _ in range(rng.randint(1, 2)):
        symbol = "".join(rng.choices(EDGE_SYMBOLS, k=rng.choice((1, 1, 2))))
        at = rng.randrange(len(units))
        place = rng.randrange(3)
        if place == 0:
            units[at] = symbol + units[at]
        elif place == 1 or at == len(units) - 1:
            units[at] += symbol
        else:
            gaps[at] = gaps[at] + symbol + gaps[at]
    return units[0] + "".join(gap + unit for gap, unit in zip(gaps, units[1:], strict=True))


def punctuation(rng: random.Random, text: str) -> str | None:
    words = [_units(w) for w in text.split(" ")]
    mark = rng.choice(PUNCTUATION)
    if rng.random() < 0.4:  # z.o.r.b.l.a.x
        out = [mark.join(w) for w in words]
        return " ".join(out) if any(len(w) > 1 for w in words) else None
    spots = [(wi, ui) for wi, w in enumerate(words) for ui in range(1, len(w))]
    if not spots:
        return None
    for wi, ui in sorted(rng.sample(spots, min(len(spots), rng.randint(1, 2))), reverse=True):
        words[wi].insert(ui, rng.choice(PUNCTUATION))
    return " ".join("".join(w) for w in words)


def repeated_letters(rng: random.Random, text: str) -> str | None:
    units = _units(text)
    letters = [i for i, u in enumerate(units) if u[0].isalpha()]
    if not letters:
        return None
    for i in rng.sample(letters, rng.randint(1, min(3, len(letters)))):
        units[i] *= rng.randint(2, 5)
    return "".join(units)


def _one_edit(rng: random.Random, word: str, alphabet: str) -> str:
    op = rng.randrange(4)
    if op == 0:
        at = rng.randrange(len(word) + 1)
        return word[:at] + rng.choice(alphabet) + word[at:]
    if op == 1 and len(word) > 2:
        at = rng.randrange(len(word))
        return word[:at] + word[at + 1 :]
    if op == 3 and len(word) > 1:
        at = rng.randrange(len(word) - 1)
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    at = rng.randrange(len(word))
    return word[:at] + rng.choice(alphabet.replace(word[at], "")) + word[at + 1 :]


def _edits(rng: random.Random, text: str, edits: int, min_len: int, max_len: int) -> str | None:
    words = text.split(" ")
    eligible = [i for i, w in enumerate(words) if min_len <= len(collapse(w)) <= max_len]
    if not eligible:
        return None
    chosen = [i for i in eligible if rng.random() < 0.5] or [rng.choice(eligible)]
    for i in chosen:
        word = words[i]
        alphabet = CYRILLIC_ALPHABET if not _has_latin(word) else LATIN_ALPHABET
        for _ in range(50):
            edited = word
            for _ in range(edits):
                edited = _one_edit(rng, edited, alphabet)
            if OSA.distance(collapse(edited), collapse(word)) == edits:
                words[i] = edited
                break
        else:
            return None
    return " ".join(words)


def one_edit(rng: random.Random, text: str) -> str | None:
    return _edits(rng, text, 1, 5, 8)


def two_edits(rng: random.Random, text: str) -> str | None:
    return _edits(rng, text, 2, 9, 99)


def _lookalikes(rng: random.Random, text: str, table: Mapping[str, str]) -> str | None:
    out: list[str] = []
    changed = False
    for index, word in enumerate(_word_parts(text)):
        chars = list(word)
        if index % 2:
            out.append(word)
            continue
        spots = [i for i, c in enumerate(chars) if c in table]
        latin = sum(1 for c in chars if c.isascii() and c.isalpha())
        if spots and latin >= 2:  # keep a Latin letter: a wholly Cyrillic word is Cyrillic
            for i in rng.sample(spots, rng.randint(1, min(len(spots), latin - 1))):
                chars[i] = table[chars[i]]
            changed = True
        out.append("".join(chars))
    return "".join(out) if changed else None


def cyrillic_lookalikes(rng: random.Random, text: str) -> str | None:
    return _lookalikes(rng, text, CYRILLIC_LOOKALIKES)


def greek_lookalikes(rng: random.Random, text: str) -> str | None:
    return _lookalikes(rng, text, GREEK_LOOKALIKES)


def full_width(rng: random.Random, text: str) -> str | None:
    space = "\u3000" if rng.random() < 0.5 else " "
    return "".join(
        space if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text
    )


def math_letters(rng: random.Random, text: str) -> str | None:
    style = rng.choice(MATH_STYLES)
    table = MATH_ALPHABETS[style] | MATH_GREEK.get(style, {})
    return "".join(table.get(c, c) for c in text)


def invisible_characters(rng: random.Random, text: str) -> str | None:
    units = _units(text)
    spots = [i for i in range(1, len(units)) if not (units[i - 1] == " " == units[i])]
    if not spots:
        return None
    for i in sorted(rng.sample(spots, min(len(spots), rng.randint(1, 3))), reverse=True):
        units.insert(i, "".join(rng.choices(INVISIBLES, k=rng.randint(1, 2))))
    return "".join(units)


def _marks(rng: random.Random, text: str, marks: Sequence[str], latin: bool) -> str | None:
    units = _units(text)
    letters = [
        i for i, u in enumerate(units) if u[0].isalpha() and (u[0].isascii() if latin else True)
    ]
    if not letters:
        return None
    for i in rng.sample(letters, rng.randint(1, min(4, len(letters)))):
        units[i] = units[i][0] + rng.choice(marks) + units[i][1:]
    out = "".join(units)
    return unicodedata.normalize("NFC", out) if rng.random() < 0.5 else out


def diacritics(rng: random.Random, text: str) -> str | None:
    return _marks(rng, text, COMBINING_MARKS, latin=True)


def plural(rng: random.Random, text: str) -> str | None:
    return text + "s"


def joined_phrase(rng: random.Random, text: str) -> str | None:
    return text.replace(" ", "")


def separated_phrase(rng: random.Random, text: str) -> str | None:
    """One separator between every two words, or (half the time) a separator or a
    space chosen for each gap: ``zorb-quen lax``."""
    words = text.split(" ")
    if rng.random() < 0.5:
        return rng.choice(PHRASE_SEPARATORS).join(words)
    gaps = [rng.choice(PHRASE_SEPARATORS + " ") for _ in words[1:]]
    if all(g == " " for g in gaps):
        gaps[rng.randrange(len(gaps))] = rng.choice(PHRASE_SEPARATORS)
    return words[0] + "".join(g + w for g, w in zip(gaps, words[1:], strict=True))


@dataclass(frozen=True)
class Perturbation:
    """One evasion class of DESIGN §4, applied to an invented term."""

    name: str
    description: str
    apply: Transform
    eligible: Callable[[InventedTerm], bool]


def _latin(term: InventedTerm) -> bool:
    return term.script == "latin"


def _any_word(term: InventedTerm, test: Callable[[str], bool]) -> bool:
    return term.script == "latin" and any(test(w) for w in term.words)


# In the order they are applied when combined: structure first, then letters, then
# the way the letters are written out.
PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation(
        "edit-1",
        "1 edit in a 5-8 letter word",
        one_edit,
        lambda t: t.fuzzy and _any_word(t, lambda w: 5 <= len(collapse(w)) <= 8),
    ),
    Perturbation(
        "edit-2",
        "2 edits in a 9+ letter word",
        two_edits,
        lambda t: t.fuzzy and _any_word(t, lambda w: len(collapse(w)) >= 9),
    ),
    Perturbation(
        "plural",
        "plural s",
        plural,
        lambda t: t.fuzzy and _latin(t) and len(t.words[-1]) >= 5 and not t.text.endswith("s"),
    ),
    Perturbation(
        "joined-phrase",
        "phrase written as one word",
        joined_phrase,
        lambda t: _latin(t) and len(t.words) > 1,
    ),
    Perturbation(
        "separated-phrase",
        "phrase split by - . _ / + (and spaces)",
        separated_phrase,
        lambda t: _latin(t) and len(t.words) > 1,
    ),
    Perturbation("repeated-letters", "repeated letters", repeated_letters, _latin),
    Perturbation(
        "leet-digits",
        "digits for letters",
        leet_digits,
        lambda t: _any_word(t, lambda w: len(w) > 1 and any(c in DIGIT_LEET for c in w)),
    ),
    Perturbation(
        "leet-symbols",
        "@ $ ! | for letters",
        leet_symbols,
        lambda t: _any_word(t, lambda w: any(c in SYMBOL_LEET for c in w[1:-1])),
    ),
    Perturbation(
        "cyrillic-lookalikes",
        "Cyrillic look-alike letters",
        cyrillic_lookalikes,
        lambda t: _any_word(t, lambda w: len(w) > 1 and any(c in CYRILLIC_LOOKALIKES for c in w)),
    ),
    Perturbation(
        "greek-lookalikes",
        "Greek look-alike letters",
        greek_lookalikes,
        lambda t: _any_word(t, lambda w: len(w) > 1 and any(c in GREEK_LOOKALIKES for c in w)),
    ),
    Perturbation("case", "case changes", case_changes, _latin),
    Perturbation("diacritics", "diacritics added", diacritics, _latin),
    Perturbation("full-width", "full-width forms", full_width, _latin),
    Perturbation("math-letters", "mathematical letters", math_letters, _latin),
    Perturbation("punctuation", "punctuation between letters", punctuation, _latin),
    Perturbation(
        "spaced-letters",
        "letters spaced out",
        spaced_letters,
        lambda t: _latin(t) and len(t.text.replace(" ", "")) >= 3,
    ),
    Perturbation(
        "edge-symbols",
        "@ $ ! | beside words or spaced letters",
        edge_symbols,
        _latin,
    ),
    Perturbation("invisible", "zero-width, bidi, controls", invisible_characters, _latin),
)
PERTURBATION_BY_NAME = {p.name: p for p in PERTURBATIONS}

# Every class of a report, in order.
RECALL_CLASSES = (
    "embedded",
    *(p.name for p in PERTURBATIONS),
    "pairs",
    "cyrillic-terms",
    "cjk-terms",
    "substring",
    "rules",
    "allow-control",
)
FALSE_POSITIVE_CLASSES = (
    *(f"innocent-{lang}" for lang in QUERY_LANGUAGES),
    "substring-words",
    "edge-symbol-words",
    "near-short",
    "beyond-allowance",
    "fuzzy-off",
    "allow-phrase",
    "rule-partial",
)

# Pairs whose combination the contract does not promise to undo, or that repeat
# one idea: a spaced-out or dotted digit or look-alike is a word of its own
# (a number, or a wholly Cyrillic word; edge-symbols spells letters out too, and
# its lone symbols are punctuation), and 1 edit plus a plural is 2 edits.
_CLASHES = {
    frozenset((first, second))
    for first in ("spaced-letters", "punctuation", "edge-symbols")
    for second in ("leet-digits", "leet-symbols", "cyrillic-lookalikes", "greek-lookalikes")
} | {
    frozenset(pair)
    for pair in [
        ("spaced-letters", "punctuation"),
        ("spaced-letters", "separated-phrase"),
        ("edge-symbols", "spaced-letters"),
        ("edge-symbols", "punctuation"),
        ("edge-symbols", "separated-phrase"),
        ("edit-1", "plural"),
        ("edit-2", "plural"),
        ("edit-1", "edit-2"),
        ("joined-phrase", "separated-phrase"),
        ("full-width", "math-letters"),
    ]
}
PAIRS = tuple(
    (a, b)
    for i, a in enumerate(PERTURBATIONS)
    for b in PERTURBATIONS[i + 1 :]
    if frozenset((a.name, b.name)) not in _CLASHES
)


_EDITS = frozenset({"edit-1", "edit-2"})
_JOINING = frozenset({"joined-phrase", "spaced-letters"})


def perturb_pair(
    rng: random.Random, term: InventedTerm, pair: tuple[Perturbation, Perturbation]
) -> str | None:
    """Apply both perturbations, or return None when the result would lie beyond
    the contract: a phrase whose words are written together gets the edit
    allowance of the joined length, not of each word."""
    names = {p.name for p in pair}
    text = term.text
    for perturbation in pair:
        changed = perturbation.apply(rng, text)
        if changed is None:
            return None
        text = changed
        if perturbation.name in _EDITS and names & _JOINING and len(term.words) > 1:
            joined, target = collapse(text.replace(" ", "")), collapse(term.text.replace(" ", ""))
            if OSA.distance(joined, target) > allowance(len(target)):
                return None
    return text


def halfwidth_katakana(text: str) -> str:
    out: list[str] = []
    for char in text:
        decomposed = unicodedata.normalize("NFD", char)
        base, marks = decomposed[0], decomposed[1:]
        half = _HALFWIDTH_KATAKANA.get(base)
        if half is None or any(m not in _HALFWIDTH_MARKS for m in marks):
            out.append(char)
        else:
            out.append(half + "".join(_HALFWIDTH_MARKS[m] for m in marks))
    return "".join(out)


def embed(rng: random.Random, text: str, fillers: Sequence[str], joiner: str = " ") -> str:
    """``text`` among one to four innocent words (at least one before or after)."""
    before = rng.randint(0, 2)
    after = rng.randint(0 if before else 1, 2)
    words = [rng.choice(fillers) for _ in range(before + after)]
    return joiner.join([*words[:before], text, *words[before:]])


def innocent_query(rng: random.Random, words: Sequence[str], lang: str) -> str:
    """A query made of common words of one language (Chinese: joined, no spaces)."""
    if lang == "zh":
        return "".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
    count = rng.choices(range(1, 9), weights=(15, 30, 25, 15, 8, 4, 2, 1))[0]
    query = " ".join(rng.choice(words) for _ in range(count))
    return query.capitalize() if rng.random() < 0.2 else query


# -- the evaluation --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    query: str
    source: str
    """The invented term, stand-in or language behind the query (for reports)."""


@dataclass(frozen=True)
class CaseClass:
    name: str
    kind: Kind
    description: str
    matcher: str
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class Failure:
    query: str
    source: str
    got: str | None
    """What matched (list:term or list:rule), the exception, or None."""


@dataclass(frozen=True)
class ClassResult:
    name: str
    kind: Kind
    description: str
    total: int
    matched: int
    errors: int = 0
    failures: tuple[Failure, ...] = ()

    @property
    def wrong(self) -> int:
        return (self.total - self.matched if self.kind == "recall" else self.matched) + (
            self.errors if self.kind == "false_positive" else 0
        )

    @property
    def rate(self) -> float:
        """Recall, or false-positive rate."""
        return self.matched / self.total if self.total else 0.0

    @property
    def target(self) -> float:
        return RECALL_CLASS_TARGET if self.kind == "recall" else FALSE_POSITIVE_TARGET

    @property
    def met(self) -> bool:
        if self.total == 0 or self.errors:
            return False
        if self.kind == "recall":
            return self.rate >= self.target
        return self.rate <= self.target


@dataclass(frozen=True)
class Report:
    config: EvalConfig
    classes: tuple[ClassResult, ...]
    generate_seconds: float
    build_seconds: float
    match_seconds: float
    list_terms: int

    def of_kind(self, kind: Kind) -> tuple[ClassResult, ...]:
        return tuple(c for c in self.classes if c.kind == kind)

    def __getitem__(self, name: str) -> ClassResult:
        for result in self.classes:
            if result.name == name:
                return result
        raise KeyError(name)

    @property
    def innocent(self) -> tuple[ClassResult, ...]:
        return tuple(c for c in self.classes if c.name.startswith("innocent-"))

    @property
    def recall(self) -> float:
        classes = self.of_kind("recall")
        return sum(c.matched for c in classes) / max(1, sum(c.total for c in classes))

    @property
    def false_positive_rate(self) -> float:
        """Over the innocent queries of every language."""
        classes = self.innocent
        return sum(c.matched + c.errors for c in classes) / max(1, sum(c.total for c in classes))

    @property
    def queries(self) -> int:
        return sum(c.total for c in self.classes)

    def shortfalls(self) -> list[str]:
        """One line per missed target; empty when every target is met."""
        out = [
            f"{c.name}: {c.rate:.2%} {'recall' if c.kind == 'recall' else 'false positives'}"
            f" ({c.wrong} of {c.total} wrong, {c.errors} errors), target "
            f"{'≥' if c.kind == 'recall' else '≤'} {c.target:.1%}"
            for c in self.classes
            if not c.met
        ]
        if self.recall < RECALL_OVERALL_TARGET:
            out.append(f"overall recall {self.recall:.2%} < {RECALL_OVERALL_TARGET:.0%}")
        if self.false_positive_rate > FALSE_POSITIVE_TARGET:
            out.append(
                f"innocent false positives {self.false_positive_rate:.3%}"
                f" > {FALSE_POSITIVE_TARGET:.1%}"
            )
        return out


def _cycle(rng: random.Random, items: Sequence[InventedTerm]) -> Iterator[InventedTerm]:
    """Every item once in random order, then again in another order, and so on."""
    while True:
        order = list(items)
        rng.shuffle(order)
        yield from order


def _collect(count: int, make: Callable[[], Case | None]) -> tuple[Case, ...]:
    cases: list[Case] = []
    for _ in range(count * 20):
        if len(cases) >= count:
            break
        case = make()
        if case is not None:
            cases.append(case)
    return tuple(cases)


@dataclass
class _Fixture:
    """Everything one evaluation matches against, and the words it draws on."""

    vocabulary: Vocabulary
    config: EvalConfig
    main_terms: list[InventedTerm]
    allow: list[tuple[InventedTerm, str]]
    rules: list[tuple[tuple[str, ...], ...]]
    fuzzy_singles: list[str]
    exact_singles: list[str]
    lists: dict[str, list[TermList]] = field(default_factory=dict)

    def rng_for(self, name: str) -> random.Random:
        """The seeded generator of one case class: classes never share a stream."""
        return random.Random(f"{self.config.seed}:{name}")


def build_fixture(config: EvalConfig, vocabulary: Vocabulary) -> _Fixture:
    forge = WordForge(random.Random(f"{config.seed}:words"), vocabulary)
    for name in GENERIC_NAMES:
        forge.claim(plain(name.replace(" ", "")))
        for word in name.split(" "):
            forge.claim(word)
    main = [InventedTerm(n) for n in GENERIC_NAMES] + invented_terms(forge, config.list_terms)
    rng = forge.rng
    allow_count = max(20, config.per_class // 4)
    allow: list[tuple[InventedTerm, str]] = []
    common = [w for w in vocabulary.query_words["en"][:3000] if len(w) >= 3 and w.isalpha()]
    short = [w for w in vocabulary.query_words["en"][:200] if len(w) == 2 and w.isalpha()]
    for _ in range(allow_count):
        term = InventedTerm(forge.latin(5, 9))
        # Some allow phrases hang on a little word ("of", "on"), as real ones do.
        other = rng.choice(short if rng.random() < 0.1 else common)
        allow.append(
            (term, f"{other} {term.text}" if rng.random() < 0.5 else f"{term.text} {other}")
        )
    rules: list[tuple[tuple[str, ...], ...]] = []
    for _ in range(max(20, config.per_class // 4)):
        groups = tuple(
            tuple(
                forge.latin(4, 9) if rng.random() < 0.9 else (forge.phrase(2, 4, 7) or "")
                for _ in range(rng.randint(1, 3))
            )
            for _ in range(rng.randint(2, 3))
        )
        rules.append(tuple(tuple(m for m in g if m) or (forge.latin(4, 9),) for g in groups))
    fuzzy_singles = [forge.latin(5, 12) for _ in range(max(20, config.per_class // 2))]
    exact_singles = [forge.latin(5, 12) for _ in range(max(20, config.per_class // 2))]
    fixture = _Fixture(vocabulary, config, main, allow, rules, fuzzy_singles, exact_singles)
    fixture.lists = {
        "main": [
            TermList(
                id="eval-main",
                category="eval",
                terms=tuple(t.as_term() for t in main),
            ),
            TermList(
                id="eval-allow",
                category="eval",
                action="warn",
                terms=tuple(t.as_term() for t, _ in allow),
                allow=tuple(phrase for _, phrase in allow),
            ),
            TermList(
                id="eval-rules",
                category="eval",
                action="count",
                rules=tuple(Rule(f"r{i}", groups) for i, groups in enumerate(rules)),
            ),
        ],
        "stand-ins": [
            TermList(id="stand-ins", category="eval", terms=tuple(Term(s, True) for s in STAND_INS))
        ],
        "near": [
            TermList(
                id="near-fuzzy", category="eval", terms=tuple(Term(w, True) for w in fuzzy_singles)
            ),
            TermList(
                id="near-exact",
                category="eval",
                fuzzy=False,
                terms=tuple(Term(w, False) for w in exact_singles),
            ),
        ],
    }
    return fixture


def _recall_classes(fixture: _Fixture) -> list[CaseClass]:
    config, vocabulary = fixture.config, fixture.vocabulary
    count = config.per_class
    fillers = vocabulary.latin_fillers
    classes: list[CaseClass] = []

    def perturbed(perturbation: Perturbation) -> CaseClass:
        rng = fixture.rng_for(perturbation.name)
        terms = _cycle(rng, [t for t in fixture.main_terms if perturbation.eligible(t)])

        def make() -> Case | None:
            term = next(terms)
            query = perturbation.apply(rng, term.text)
            if query is None:
                return None
            if rng.random() < 0.3:
                query = embed(rng, query, fillers)
            return Case(query, term.text)

        return CaseClass(
            perturbation.name, "recall", perturbation.description, "main", _collect(count, make)
        )

    latin = [t for t in fixture.main_terms if t.script == "latin"]

    # Plain embedding first: the baseline every other class builds on.
    rng = fixture.rng_for("embedded")
    plain_terms = _cycle(rng, latin)

    def make_embedded() -> Case | None:
        term = next(plain_terms)
        return Case(embed(rng, term.text, fillers), term.text)

    classes.append(
        CaseClass(
            "embedded",
            "recall",
            "term inside a longer query",
            "main",
            _collect(count, make_embedded),
        )
    )
    classes.extend(perturbed(p) for p in PERTURBATIONS)

    rng = fixture.rng_for("pairs")
    pair_terms = _cycle(rng, latin)

    def make_pair() -> Case | None:
        term = next(pair_terms)
        pairs = [p for p in PAIRS if p[0].eligible(term) and p[1].eligible(term)]
        if not pairs:
            return None
        pair = rng.choice(pairs)
        query = perturb_pair(rng, term, pair)
        return (
            None if query is None else Case(query, f"{term.text} [{pair[0].name}+{pair[1].name}]")
        )

    classes.append(
        CaseClass("pairs", "recall", "two evasions combined", "main", _collect(count, make_pair))
    )

    rng = fixture.rng_for("cyrillic-terms")
    cyrillic = _cycle(rng, [t for t in fixture.main_terms if t.script == "cyrillic"])
    cyrillic_variants: tuple[Transform, ...] = (
        lambda r, s: s,
        case_changes,
        repeated_letters,
        one_edit,
        invisible_characters,
        lambda r, s: _marks(r, s, _CYRILLIC_MARKS, latin=False),
    )

    def make_cyrillic() -> Case | None:
        term = next(cyrillic)
        query = rng.choice(cyrillic_variants)(rng, term.text)
        if query is None:
            return None
        if rng.random() < 0.7:
            query = embed(rng, query, vocabulary.russian_fillers)
        return Case(query, term.text)

    classes.append(
        CaseClass(
            "cyrillic-terms",
            "recall",
            "invented Cyrillic terms",
            "main",
            _collect(count, make_cyrillic),
        )
    )

    rng = fixture.rng_for("cjk-terms")
    cjk = _cycle(rng, [t for t in fixture.main_terms if t.script == "cjk"])

    def make_cjk() -> Case | None:
        term = next(cjk)
        text = term.text
        roll = rng.random()
        if roll < 0.2:
            text = invisible_characters(rng, text) or text
        elif roll < 0.35:
            text = halfwidth_katakana(text)
        return Case(embed(rng, text, vocabulary.han_fillers, joiner=""), term.text)

    classes.append(
        CaseClass(
            "cjk-terms",
            "recall",
            "Han/Kana terms inside unspaced text",
            "main",
            _collect(count, make_cjk),
        )
    )

    rng = fixture.rng_for("substring")
    substring = _cycle(rng, [t for t in fixture.main_terms if t.substring])

    def make_substring() -> Case | None:
        term = next(substring)
        before = rng.choice(("", rng.choice(fillers)))
        after = rng.choice(fillers) if not before or rng.random() < 0.5 else ""
        return Case(embed(rng, before + term.text + after, fillers), term.text)

    classes.append(
        CaseClass(
            "substring",
            "recall",
            "substring term inside a longer word",
            "main",
            _collect(count, make_substring),
        )
    )

    rng = fixture.rng_for("rules")

    def make_rule() -> Case | None:
        groups = rng.choice(fixture.rules)
        words = [rng.choice(group) for group in groups]
        words += [rng.choice(fillers) for _ in range(rng.randint(0, 3))]
        rng.shuffle(words)
        query = " ".join(words)
        return Case(case_changes(rng, query) or query if rng.random() < 0.3 else query, "rule")

    classes.append(
        CaseClass(
            "rules", "recall", "co-occurrence rules, any order", "main", _collect(count, make_rule)
        )
    )

    rng = fixture.rng_for("allow-control")

    def make_allow_control() -> Case | None:
        term, phrase = rng.choice(fixture.allow)
        other = phrase.replace(term.text, "").strip()
        query = embed(rng, term.text, fillers)
        # No word of the query may read as the allow phrase's other word.
        for word in query.split(" "):
            if word != term.text and OSA.distance(plain(word), other) <= allowance(len(other)):
                return None
        return Case(query, term.text)

    classes.append(
        CaseClass(
            "allow-control",
            "recall",
            "allow-list terms outside their allow phrase",
            "main",
            _collect(count, make_allow_control),
        )
    )
    return classes


def _negative_classes(fixture: _Fixture) -> list[CaseClass]:
    config, vocabulary = fixture.config, fixture.vocabulary
    count = config.per_class
    fillers = vocabulary.latin_fillers
    classes: list[CaseClass] = []

    per_language = config.innocent_queries // len(QUERY_LANGUAGES)
    for lang in QUERY_LANGUAGES:
        rng = fixture.rng_for(f"innocent-{lang}")
        words = vocabulary.query_words[lang]
        cases = tuple(Case(innocent_query(rng, words, lang), lang) for _ in range(per_language))
        classes.append(
            CaseClass(f"innocent-{lang}", "false_positive", f"common {lang} words", "main", cases)
        )

    stand_ins = set(STAND_INS)
    rng = fixture.rng_for("substring-words")
    inside = re.compile("|".join(STAND_INS))
    containing = sorted(
        (form, real)
        for form, real in vocabulary.latin_words.items()
        if form not in stand_ins and inside.search(form)
    )
    chosen = rng.sample(containing, min(config.stand_in_words, len(containing)))
    classes.append(
        CaseClass(
            "substring-words",
            "false_positive",
            "real words containing a short term",
            "stand-ins",
            tuple(
                Case(real, next(s for s in STAND_INS if s in form)) for form, real in sorted(chosen)
            ),
        )
    )

    # The same with symbols that §4 may read as punctuation: at the word's edge
    # (``!sublime``), or inside it beside the term, where they are letters (``sub!lime``).
    rng = fixture.rng_for("edge-symbol-words")

    def make_edged() -> Case | None:
        if not containing:
            return None
        form, real = rng.choice(containing)
        stand_in = next(s for s in STAND_INS if s in form)
        symbols = "".join(rng.choices(EDGE_SYMBOLS, k=rng.choice((1, 1, 2))))
        place = rng.randrange(3)
        if place == 0:
            query = symbols + real
        elif place == 1:
            query = real + symbols
        else:
            at = form.index(stand_in) + rng.choice((0, len(stand_in)))
            if not 0 < at < len(form) or len(real) != len(form):
                return None
            query = real[:at] + symbols + real[at:]
        return Case(query, stand_in)

    classes.append(
        CaseClass(
            "edge-symbol-words",
            "false_positive",
            "those words, @ $ ! | at an edge or inside",
            "stand-ins",
            _collect(count, make_edged),
        )
    )

    rng = fixture.rng_for("near-short")
    by_length: dict[int, list[str]] = {}
    for form in vocabulary.latin_words:
        by_length.setdefault(len(form), []).append(form)
    near: dict[str, str] = {}
    for stand_in in STAND_INS:
        pool = [
            f for n in range(len(stand_in) - 1, len(stand_in) + 2) for f in by_length.get(n, [])
        ]
        for form, _, _ in process.extract(
            stand_in, pool, scorer=OSA.distance, score_cutoff=1, limit=None
        ):
            if form not in stand_ins and form != stand_in:
                near.setdefault(vocabulary.latin_words[form], stand_in)
        for _ in range(count // len(STAND_INS)):  # invented neighbours: lmie, limr, lme
            variant = _one_edit(rng, stand_in, LATIN_ALPHABET)
            if collapse(variant) != stand_in and variant not in stand_ins and len(variant) > 1:
                near.setdefault(variant, stand_in)
    pairs = sorted(near.items())
    chosen_near = rng.sample(pairs, min(2 * count, len(pairs)))
    classes.append(
        CaseClass(
            "near-short",
            "false_positive",
            "1 edit from a term of <= 4 letters",
            "stand-ins",
            tuple(Case(word, stand_in) for word, stand_in in sorted(chosen_near)),
        )
    )

    exact = set(fixture.exact_singles)

    def clear_of_near_lists(candidate: str) -> bool:
        form = collapse(candidate)
        if form in exact:
            return False
        for word, distance, _ in process.extract(
            form, fixture.fuzzy_singles, scorer=OSA.distance, score_cutoff=2, limit=None
        ):
            if distance <= allowance(len(word)):
                return False
        return True

    def beyond(rng: random.Random, words: list[str], extra: int) -> Callable[[], Case | None]:
        def make() -> Case | None:
            word = rng.choice(words)
            edits = (allowance(len(word)) if extra else 0) + 1
            candidate = word
            for _ in range(edits):
                candidate = _one_edit(rng, candidate, LATIN_ALPHABET)
            if OSA.distance(collapse(candidate), word) < edits or not clear_of_near_lists(
                candidate
            ):
                return None
            query = embed(rng, candidate, fillers) if rng.random() < 0.3 else candidate
            return Case(query, word)

        return make

    classes.append(
        CaseClass(
            "beyond-allowance",
            "false_positive",
            "2 edits in 5-8 letters, 3 in 9+",
            "near",
            _collect(count, beyond(fixture.rng_for("beyond-allowance"), fixture.fuzzy_singles, 1)),
        )
    )
    classes.append(
        CaseClass(
            "fuzzy-off",
            "false_positive",
            "1 edit from a fuzzy = false term",
            "near",
            _collect(count, beyond(fixture.rng_for("fuzzy-off"), fixture.exact_singles, 0)),
        )
    )

    rng = fixture.rng_for("allow-phrase")

    def make_allowed() -> Case | None:
        term, phrase = rng.choice(fixture.allow)
        query = embed(rng, phrase, fillers) if rng.random() < 0.5 else phrase
        return Case(case_changes(rng, query) or query if rng.random() < 0.3 else query, term.text)

    classes.append(
        CaseClass(
            "allow-phrase",
            "false_positive",
            "term inside an allow phrase",
            "main",
            _collect(count, make_allowed),
        )
    )

    rng = fixture.rng_for("rule-partial")

    def make_partial() -> Case | None:
        groups = list(rng.choice(fixture.rules))
        del groups[rng.randrange(len(groups))]
        words = [rng.choice(group) for group in groups]
        words += [rng.choice(fillers) for _ in range(rng.randint(0, 3))]
        rng.shuffle(words)
        return Case(" ".join(words), "rule")

    classes.append(
        CaseClass(
            "rule-partial",
            "false_positive",
            "rule with one group missing",
            "main",
            _collect(count, make_partial),
        )
    )
    return classes


def describe(match: Match) -> str:
    return f"{match.list_id}:{match.term if match.term is not None else match.rule}"


def run_class(case_class: CaseClass, matcher: Matcher) -> ClassResult:
    matched = errors = 0
    failures: list[Failure] = []
    expect = case_class.kind == "recall"
    for case in case_class.cases:
        try:
            found = matcher.match(case.query)
        except Exception as exc:  # the matcher promises never to raise: report, don't stop
            errors += 1
            if len(failures) < MAX_EXAMPLES:
                failures.append(Failure(case.query, case.source, f"raised {exc!r}"))
            continue
        if found is not None:
            matched += 1
        if (found is not None) != expect and len(failures) < MAX_EXAMPLES:
            failures.append(
                Failure(case.query, case.source, None if found is None else describe(found))
            )
    return ClassResult(
        case_class.name,
        case_class.kind,
        case_class.description,
        len(case_class.cases),
        matched,
        errors,
        tuple(failures),
    )


def build_cases(config: EvalConfig) -> tuple[_Fixture, list[CaseClass]]:
    """The lists and the query classes of one evaluation, without running them."""
    fixture = build_fixture(config, load_vocabulary(config.query_top, config.known_top))
    return fixture, _recall_classes(fixture) + _negative_classes(fixture)


def evaluate(config: EvalConfig | None = None) -> Report:
    """Run the whole evaluation; see the module docstring."""
    config = config or EvalConfig()
    started = time.perf_counter()
    fixture, classes = build_cases(config)
    generated = time.perf_counter()
    matchers = {name: Matcher(lists) for name, lists in fixture.lists.items()}
    built = time.perf_counter()
    results = tuple(run_class(c, matchers[c.matcher]) for c in classes)
    finished = time.perf_counter()
    return Report(
        config,
        results,
        generate_seconds=generated - started,
        build_seconds=built - generated,
        match_seconds=finished - built,
        list_terms=len(fixture.main_terms),
    )


def _row(result: ClassResult) -> str:
    sign = "≥" if result.kind == "recall" else "≤"
    status = "ok" if result.met else "MISSED"
    rate = f"{result.rate:8.2%}" if result.kind == "recall" else f"{result.rate:8.3%}"
    return (
        f"  {result.name:<20} {result.description:<42} {result.total:>6,} {result.matched:>7,}"
        f" {rate}  {sign} {result.target:.1%}  {status}"
    )


def format_report(report: Report, *, examples: int = 3) -> str:
    """The report as a plain-text table, with examples of what went wrong."""
    config = report.config
    lines = [
        f"matcher quality: seed {config.seed}, main list of {report.list_terms:,} terms, "
        f"{report.queries:,} queries",
        f"generated in {report.generate_seconds:.1f} s, built in {report.build_seconds:.2f} s, "
        f"matched in {report.match_seconds:.2f} s "
        f"({report.match_seconds / max(1, report.queries) * 1e6:.0f} µs a query)",
        "",
        f"  {'recall class':<20} {'what the query does':<42} {'cases':>6} {'matched':>7}"
        f" {'recall':>8}  target",
    ]
    recall = report.of_kind("recall")
    lines += [_row(r) for r in recall]
    total = sum(r.total for r in recall)
    matched = sum(r.matched for r in recall)
    status = "ok" if report.recall >= RECALL_OVERALL_TARGET else "MISSED"
    lines.append(
        f"  {'overall':<20} {'':<42} {total:>6,} {matched:>7,} {report.recall:8.2%}"
        f"  ≥ {RECALL_OVERALL_TARGET:.0%}    {status}"
    )
    lines += [
        "",
        f"  {'false-positive class':<20} {'what the query is':<42} {'cases':>6} {'matched':>7}"
        f" {'rate':>8}  target",
    ]
    lines += [_row(r) for r in report.of_kind("false_positive")]
    innocent = report.innocent
    total = sum(r.total for r in innocent)
    matched = sum(r.matched for r in innocent)
    status = "ok" if report.false_positive_rate <= FALSE_POSITIVE_TARGET else "MISSED"
    lines.append(
        f"  {'innocent overall':<20} {'en de fr es ru zh':<42} {total:>6,} {matched:>7,}"
        f" {report.false_positive_rate:8.3%}  ≤ {FALSE_POSITIVE_TARGET:.1%}  {status}"
    )
    shown = [r for r in report.classes if r.failures and examples]
    if shown:
        lines += ["", "examples of wrong outcomes (query, what it stands for, what matched):"]
        for result in shown:
            lines.append(f"  {result.name}:")
            lines += [
                f"    {failure.query!r}  [{failure.source}]  -> {failure.got}"
                for failure in result.failures[:examples]
            ]
    shortfalls = report.shortfalls()
    lines += ["", "all targets met" if not shortfalls else "targets missed:"]
    lines += [f"  {line}" for line in shortfalls]
    return "\n".join(lines)


def iter_queries(classes: Iterable[CaseClass]) -> Iterator[tuple[str, Case]]:
    """(class name, case) for every case: for benchmarks and ad-hoc checks."""
    for case_class in classes:
        for case in case_class.cases:
            yield case_class.name, case
