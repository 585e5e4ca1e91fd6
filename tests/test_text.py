"""Canonicalization (DESIGN §4 steps 1-8), one behaviour per test."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deterrence.text import (
    Token,
    Transform,
    _joined_text,
    _plain_text,
    _plain_tokens,
    _tokenize,
    _word_by_word,
    canonical_text,
    canonicalize,
    term_words,
    tokenize,
    transform_names,
)


@pytest.mark.parametrize(
    ("query", "canonical", "transform"),
    [
        ("ZorBlax", "zorblax", "case"),
        ("ｚｏｒｂｌａｘ", "zorblax", "compatibility"),
        ("𝐳𝐨𝐫𝐛𝐥𝐚𝐱", "zorblax", "compatibility"),
        ("zor\u200bbl\u2060ax\ufeff", "zorblax", "invisible"),
        ("zor\u00adblax", "zorblax", "invisible"),
        ("zor\u202eblax", "zorblax", "invisible"),
        ("zör\u0301blàx", "zorblax", "diacritics"),
        ("zоrblах", "zorblax", "lookalike"),  # Cyrillic о and х
        ("zοrblαx", "zorblax", "lookalike"),  # Greek ο and α
        ("z0rbl4x", "zorblax", "leet"),
        ("z@rb|ax", "zarblax", "leet"),
        ("z o r b l a x", "zorblax", "spacing"),
        ("z.o.r.b.l.a.x", "zorblax", "spacing"),
        ("zorrrblaaax", "zorblax", "repeats"),
    ],
)
def test_each_step_reads_through_its_evasion(query: str, canonical: str, transform: str) -> None:
    text = canonical_text(query)
    assert text.text == canonical
    assert transform in transform_names(text.flags)


def test_numbers_stay_numbers() -> None:
    assert canonicalize("1984 2001") == "1984 2001"


def test_wholly_cyrillic_word_stays_cyrillic_with_a_latin_alternative() -> None:
    (token,) = tokenize("дом")  # д has no Latin look-alike
    assert (token.text, token.alternatives) == ("дом", ())
    (token,) = tokenize("сосо")  # every letter looks Latin
    assert token.text == "сосо"
    assert [alt for alt, _ in token.alternatives] == ["coco"]


def test_lone_punctuation_between_letters_is_a_weak_join() -> None:
    text = canonical_text("zor-blax")
    assert text.text == "zorblax"
    assert (text.starts, text.ends) == ((0, 3), (3, 7))
    assert text.tokens[1].join == Transform.SEPARATOR


def test_two_punctuation_marks_separate() -> None:
    assert canonicalize("zor--blax") == "zor blax"


def test_spaced_letters_keep_their_boundaries() -> None:
    text = canonical_text("a z o r b l a x")
    assert text.text == "azorblax"
    assert text.tokens[0].inner == (1, 2, 3, 4, 5, 6, 7)


def test_symbols_at_word_edges_are_read_both_ways() -> None:
    (token,) = tokenize("zorblax!")
    assert token.text == "zorblax"
    assert [alt for alt, _ in token.alternatives] == ["zorblaxi"]


SPACED_WITH_SYMBOLS = [
    "!t o z z l e w i c k",
    "$t o z z l e w i c k",
    "@t o z z l e w i c k",
    "|t o z z l e w i c k",
    "t o z z l e w i c k!",
    "t o z z l e w i c k$",
    "t o z! z l e w i c k",
    "t o z !z l e w i c k",
    "!t.o.z.z.l.e.w.i.c.k",
    "t.o.z!.z.l.e.w.i.c.k",
    "t o z z l e ! w i c k",  # symbols alone are punctuation (step 6)
    "t o z z l e | w i c k",
    "t o z z l e !$ w i c k",
]
"""The shipped ``tozzlewick`` spelt out, with symbols at its letters' edges or alone
between them (test_matcher matches them too)."""


@pytest.mark.parametrize("query", SPACED_WITH_SYMBOLS)
def test_symbols_at_the_edges_of_spaced_letters_are_punctuation_between_them(
    query: str,
) -> None:
    """``!t`` next to spaced letters is ``t`` with a mark before it, or the word
    ``it``: read as the first, it is one of the run's letters (step 7)."""
    (token,) = canonical_text(query).tokens
    assert token.text == "tozlewick"
    assert "spacing" in transform_names(token.flags)


def test_a_run_keeps_how_it_reads_with_the_symbols_as_letters() -> None:
    (token,) = tokenize("s h y z s k $i l")
    assert token.text == "shyzskil"
    assert [piece.text for piece in token.pieces] == ["shyzsk", "i", "l"]
    assert [alt for alt, _ in token.pieces[1].alternatives] == ["si"]
    # No pieces when the symbols read the same either way, or are not there.
    assert tokenize("a b i!")[0].pieces == ()
    assert tokenize("a b c")[0].pieces == ()


def test_a_piece_with_symbols_cut_from_its_edge_keeps_where_whitespace_was() -> None:
    """Found by the fuzzer: the piece ``!!1.o.r b`` reads without its first two
    symbols, so whitespace at its fifth character is at the reading's third."""
    (token,) = tokenize("!!1.o.r b l@")
    assert token.text == "iorbl"
    assert [(piece.text, piece.spaces) for piece in token.pieces] == [("iorb", (3,)), ("l", ())]


def test_symbols_at_both_edges_are_each_a_letter_or_punctuation() -> None:
    (token,) = tokenize("$blix!")
    assert token.text == "blix"
    assert sorted(alt for alt, _ in token.alternatives) == ["blixi", "sblix", "sblixi"]


def test_a_leet_letter_is_latin_so_look_alikes_beside_it_are_too() -> None:
    (token,) = tokenize("з0рбляк")  # з б л я have no Latin look-alike
    assert token.text == "зopбляk"
    # In the order of steps 4 and 5, an alternative: one edit from a Cyrillic word.
    assert [alt for alt, _ in token.alternatives] == ["зoрбляк"]


def test_words_joined_weakly_read_look_alikes_as_latin_together() -> None:
    text = canonical_text("zorbl-ах")  # Cyrillic а and х
    assert text.text == "zorblax"
    assert [alt for alt, _ in text.tokens[1].alternatives] == ["ах"]


def test_digits_and_symbols_are_no_part_of_words_without_spaces() -> None:
    assert canonicalize("桥7鲸") == "桥 7 鲸"
    assert canonicalize("桥15") == "桥 15"
    assert canonicalize("桥!鲸") == "桥鲸"  # punctuation: a weak join
    assert canonicalize("a-桥") == "a 桥"  # no weak join between the two kinds


def test_scripts_without_spaces_do_not_share_words_with_latin() -> None:
    assert canonicalize("中文zorblax") == "中文 zorblax"


def test_term_words_split_on_weak_joins() -> None:
    assert term_words("Zor-Blax Mirvel") == ("zor", "blax", "mirvel")


@pytest.mark.parametrize(
    "query",
    ["", "\x00", "\ud800", "\U0010ffff", "a" * 100_000, "\u0301" * 10, "!!!", "@ $ |"],
)
def test_odd_input_never_raises(query: str) -> None:
    canonical_text(query)


def test_canonicalize_is_idempotent_on_examples() -> None:
    for query in ["Z o r b l a x", "zor-rblax", "aa b c", "x.y.z 1 2 3", "хорошо zоrblах"]:
        once = canonicalize(query)
        assert canonicalize(once) == once


def test_the_plain_ascii_fast_path_agrees_with_the_general_path() -> None:
    from deterrence.text import _merge_spaced, _plain_tokens, _readings, _split_words

    rng = random.Random(7)
    words = [
        "Zorblax",
        "hello",
        "WORLD",
        "aa",
        "bb",
        "zorrrblax",
        "Ab",
        "of",
        "a",
        "I",
        "mississippi",
    ]
    checked = 0
    for _ in range(3000):
        query = " ".join(rng.choice(words) for _ in range(rng.randint(1, 5))) + " " * rng.randint(
            0, 2
        )
        fast = _plain_tokens(query)
        if fast is None:
            continue
        raw, separators, _ = _split_words(query)
        _merge_spaced(raw, separators)
        slow = [t for t in (_readings(w) for w in raw) if t is not None]
        assert [(t.text, t.flags) for t in fast] == [(t.text, t.flags) for t in slow], query
        checked += 1
    assert checked > 500


@settings(max_examples=400, deadline=None)
@given(st.from_regex(r"\A *[A-Za-z]{1,9}( +[A-Za-z]{1,9}){0,5} *\Z"))
def test_the_plain_fast_path_agrees_with_the_full_one(query: str) -> None:
    """ASCII words take a shortcut; it must give exactly what every query gets."""
    plain = _plain_tokens(query)
    full = _joined_text(_tokenize(query))
    if plain is not None:
        assert _plain_text(plain) == full
    assert canonical_text(query) == full


# Letters of many kinds: Latin with diacritics, ß and a ligature, look-alikes
# (Cyrillic о, Greek ο), Cyrillic and Greek without one, fullwidth, Han and
# kana (no spaces), the micro sign, and a combining mark on its own.
_LETTERS = "abzAZéÉüßﬁоОхдлοαλωｚＡ漢字かナµ\u0301"


def _letter_tokens(query: str) -> list[Token] | None:
    """The letters fast path alone: _word_by_word when no word needed the general path."""
    found = _word_by_word(query)
    return found[0] if found is not None and not found[1] else None


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.text(alphabet=_LETTERS, min_size=1, max_size=8), min_size=1, max_size=5),
    st.sampled_from([" ", "  "]),
)
def test_the_letters_fast_path_agrees_with_the_full_one(words: list[str], space: str) -> None:
    """Words of letters in any script take a shortcut; it must give exactly
    what the general path gives, or decline."""
    query = space.join(words)
    full = _tokenize(query)
    fast = _letter_tokens(query)
    if fast is not None:
        assert fast == full
    assert canonical_text(query) == _joined_text(full)


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.text(st.characters(categories=["L", "M", "Nd", "Nl", "No"]), min_size=1, max_size=8),
        min_size=1,
        max_size=5,
    )
)
def test_the_letters_fast_path_agrees_in_every_script(words: list[str]) -> None:
    """Letters, marks and digits from anywhere in Unicode: the letters' shortcut
    reads each word from its characters' classes and readings (translate
    tables), and must give what the general path gives, or decline."""
    query = " ".join(words)
    full = _tokenize(query)
    assert tokenize(query) == full, query
    assert canonical_text(query) == _joined_text(full), query


# Besides letters: what sends a word through the general path — punctuation,
# leet digits and symbols, an invisible character, a lone combining mark, a
# non-ASCII space — and single letters, which may run together (step 7).
_WORDS = st.one_of(
    st.text(alphabet=_LETTERS, min_size=2, max_size=8),
    st.text(alphabet="abzоοé'.-/!@$|013\u200b\u0301\u00a0", min_size=1, max_size=8),
    st.text(alphabet="abzо4", min_size=1, max_size=1),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=7), st.sampled_from([" ", "  "]))
def test_reading_word_by_word_agrees_with_the_full_path(words: list[str], space: str) -> None:
    """Words the letters' shortcut cannot read go through the general path one
    by one; the result must be exactly what the whole query gets there."""
    query = space.join(words)
    full = _tokenize(query)
    assert tokenize(query) == full, query
    assert canonical_text(query) == _joined_text(full), query


def test_innocent_queries_in_six_languages_mostly_take_a_fast_path() -> None:
    """The shortcuts serve the common query in every language of the false-
    positive suite, and agree with the general path on each."""
    from deterrence import evaluation as ev

    rng = random.Random(11)
    vocabulary = ev.load_vocabulary()
    fast = total = 0
    for lang in ev.QUERY_LANGUAGES:
        for _ in range(300):
            query = ev.innocent_query(rng, vocabulary.query_words[lang], lang)
            assert canonical_text(query) == _joined_text(_tokenize(query)), query
            fast += _plain_tokens(query) is not None or _letter_tokens(query) is not None
            total += 1
    assert fast / total > 0.8


def test_the_translate_tables_start_afresh_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of rare characters fills the tables; they start again rather than
    leave what comes after uncached, and read every query as before."""
    from deterrence import text

    monkeypatch.setattr(text, "_TABLE_LIMIT", 50)
    for table in text._CHAR_TABLES:
        table.clear()
    flood = "".join(chr(0x4E00 + i) for i in range(200))
    assert canonical_text(flood) == _joined_text(_tokenize(flood))
    assert all(0 < len(table) <= 50 for table in text._CHAR_TABLES)
    query = "café crème brûlée книги"
    assert canonical_text(query) == _joined_text(_tokenize(query))
    assert ord("é") in text._LETTERS
