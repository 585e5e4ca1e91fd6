"""Properties of matching and canonicalization that hold for any input (hypothesis).

- ``Matcher.match`` never raises: any ``str`` (lone surrogates, controls, unassigned
  code points), empty, 100 KB long;
- canonicalization is idempotent;
- a match survives every evasion of DESIGN §4 (invented words, random perturbation);
- a query of plain lower-case words matches a single-word term exactly when one of its
  words is within the term's edit allowance (DESIGN §4), and only then.

Terms are invented words built from syllables; nothing here is a real search term.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import OSA

from deterrence.evaluation import (
    PAIRS,
    PERTURBATIONS,
    InventedTerm,
    Perturbation,
    allowance,
    collapse,
    perturb_pair,
)
from deterrence.lists import Rule, Term, TermList
from deterrence.matcher import Match, Matcher
from deterrence.text import canonical_text, canonicalize

MATCHER = Matcher(
    [
        TermList(
            id="invented",
            category="testing",
            terms=(
                Term("zorblax", True),
                Term("quendrific", True),
                Term("blorvish tanquel", True),
                Term("lime", True),
                Term("flarnish", True, substring=True),
                Term("桥鲸笔", True),
                Term("зорбляк", True),
            ),
            allow=("report zorblax",),
            rules=(Rule("pair", (("glimmerdusk", "vornish"), ("skelvat",))),),
        ),
        TermList(id="exact", category="testing", fuzzy=False, terms=(Term("tozzlewick", False),)),
    ]
)

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()))
ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(categories=["Cc", "Cf", "Co", "Cn", "Mn", "Me", "Zl", "Zp", "Zs"]),
        st.sampled_from("\ud800\udbff\udc00\udfff\u200b\u200d\u2060\ufeff\u202e\u034f\ufe0f"),
        st.sampled_from("zorblax 0134578@$!|-._ "),
    )
)


def assert_match_or_none(query: str) -> None:
    found = MATCHER.match(query)
    assert found is None or isinstance(found, Match)


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_match_never_raises_on_any_text(query: str) -> None:
    assert_match_or_none(query)


@settings(max_examples=400, deadline=None)
@given(ODD_TEXT)
def test_match_never_raises_on_controls_marks_and_surrogates(query: str) -> None:
    assert_match_or_none(query)


@pytest.mark.parametrize(
    "query",
    [
        "",
        " ",
        "\ud800",  # lone high surrogate
        "\udfff",  # lone low surrogate
        "zor\ud800blax",
        "\udc80" * 50,
        "\x00" * 1000,
        "\u200d" * 1000,
        "\u0301" * 1000,
        "zorblax" + "\u0301" * 1000,
        "\U0010ffff\U000e0041\ufffe\uffff",
    ],
    ids=repr,
)
def test_match_never_raises_on_edge_cases(query: str) -> None:
    assert_match_or_none(query)


def _long_queries() -> list[tuple[str, str]]:
    rng = random.Random(7)
    alphabet = "zorblax quendrific 0134@$|-._ \u200b\u0301ｚ𝐳зо桥"
    size = 100_000
    return [
        ("letters", "a" * size),
        ("one word repeated", ("zorblax " * (size // 8))[:size]),
        ("spaced letters", ("z o r b l a x " * (size // 14))[:size]),
        ("punctuation", "-" * size),
        ("digits", "1" * size),
        ("dotted letters", ("z." * (size // 2))[:size]),
        ("mixed", "".join(rng.choice(alphabet) for _ in range(size))),
        ("han", "桥" * size),
    ]


@pytest.mark.parametrize(("kind", "query"), _long_queries(), ids=[k for k, _ in _long_queries()])
def test_match_never_raises_on_100_kb(kind: str, query: str) -> None:
    started = time.perf_counter()
    assert_match_or_none(query)
    # The middleware cuts queries to max_query_chars; this only guards against a blow-up.
    assert time.perf_counter() - started < 30


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_canonicalization_is_idempotent(text: str) -> None:
    once = canonicalize(text)
    assert canonicalize(once) == once


@settings(max_examples=300, deadline=None)
@given(ODD_TEXT)
def test_canonicalization_is_idempotent_on_odd_text(text: str) -> None:
    once = canonicalize(text)
    assert canonicalize(once) == once


# Letters of each kind that canonicalization tells apart, beside what reads as a
# letter or joins words: Latin, look-alikes (Cyrillic, Greek, upper and lower case,
# behind NFKC), Cyrillic without one, scripts without spaces, leet, punctuation,
# spaces, an invisible character and marks.
MIXED_TEXT = st.text(
    alphabet="zorbqtiаоршкзяΗηοκβΩᾨոµ𝛐桥鲸㐀ก0134789@$!|¡-._ \u200b\u0301ǅﬁⅨｚ", max_size=12
)


@settings(max_examples=1500, deadline=None)
@given(MIXED_TEXT)
def test_canonicalization_is_idempotent_where_readings_meet(text: str) -> None:
    """Where one word's reading depends on its neighbours (leet beside look-alikes,
    scripts without spaces beside others, joins and runs across them), ANY_TEXT
    rarely goes; this draws from those characters only."""
    once = canonicalize(text)
    assert canonicalize(once) == once


@pytest.mark.parametrize(
    ("query", "term"),
    [
        ("z\U0001d6d0rbl\U0001d6c2x", "zorblax"),  # 𝛐 𝛂: mathematical bold omicron, alpha
        ("z\u00b5vr\u00b5x", "zuvrux"),  # micro sign, twice
        ("mi\u0345rv\u0345el", "mirvel"),  # combining ypogegrammeni, twice
    ],
)
def test_lookalikes_reached_through_normalization(query: str, term: str) -> None:
    assert Matcher.from_terms([term]).match(query) is not None


def test_diacritics_on_leet_digits_are_dropped() -> None:
    assert canonicalize("z0\u0301rbl4\u0301x") == "zorblax"
    assert Matcher.from_terms(["zorblax"]).match("z0\u0301rbl4\u0301x") is not None


@settings(max_examples=300, deadline=None)
@given(MIXED_TEXT)
def test_a_term_in_canonical_form_matches_itself_and_where_it_came_from(text: str) -> None:
    """What idempotence is for: a term kept in canonical form (as a list
    maintainer sees it) reads the same as a query, exactly."""
    canonical = canonicalize(text)
    assume(canonical.strip())
    matcher = Matcher.from_terms([canonical], fuzzy=False, memo_size=0)
    assert matcher.match(canonical) is not None
    assert matcher.match(text) is not None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("$y.0-b", "yob"),  # leet at an edge and inside, joined by a dot
        ("a¡𠀀", "a 𠀀"),  # no weak join across scripts with and without spaces
        ("0㐀", "0 㐀"),  # a digit is no part of a Han word
        ("桥!鲸", "桥鲸"),  # a symbol beside Han is punctuation
        ("0ш", "ow"),  # a leet letter is Latin, so the look-alike beside it is too
        ("oр1-κ", "opik"),  # a word joined weakly to Latin reads its look-alikes as Latin
        ("ab-b-bc", "abc"),  # repeats collapse across joins of one letter
        ("t z㐀", "t z 㐀"),  # runs do not cross into scripts without spaces
        ("!a b c", "abc"),  # a symbol at the edge of a single letter: a run
        ("0Ω", "ow"),  # a capital is read as the small letter it is written as
        ("yᾨ", "ywi"),  # one character, two letters: each a look-alike
        ("x\u0578\u0301", "xn"),  # Armenian ո with an acute: read as Latin, it loses it
    ],
)
def test_canonicalization_is_idempotent_where_readings_meet_examples(
    text: str, canonical: str
) -> None:
    assert canonicalize(text) == canonical
    assert canonicalize(canonical) == canonical


# -- matches survive evasions ---------------------------------------------------------

_ONSETS = ("b", "d", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "qu", "x")
_NUCLEI = ("a", "e", "i", "o", "u", "y", "ai", "ou")
_CODAS = ("", "", "n", "r", "l", "x", "k", "rb", "sk")

_syllable = st.builds(lambda o, n, c: o + n + c, *map(st.sampled_from, (_ONSETS, _NUCLEI, _CODAS)))
invented_words = (
    st.lists(_syllable, min_size=2, max_size=5)
    .map("".join)
    .filter(lambda w: 4 <= len(w) <= 14 and collapse(w) == w)
)
invented_terms = st.lists(invented_words, min_size=1, max_size=3).map(" ".join)

_SINGLES = list(PERTURBATIONS)
_PAIRS = list(PAIRS)


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(invented_terms, st.sampled_from(_SINGLES), st.integers(0, 2**32))
def test_a_match_survives_each_evasion(text: str, perturbation: Perturbation, seed: int) -> None:
    term = InventedTerm(text)
    assume(perturbation.eligible(term))
    query = perturbation.apply(random.Random(seed), text)
    assume(query is not None)
    assert query is not None
    found = Matcher.from_terms([text]).match(query)
    assert found is not None, (query, perturbation.name)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(invented_terms, st.sampled_from(_PAIRS), st.integers(0, 2**32))
def test_a_match_survives_two_evasions(
    text: str, pair: tuple[Perturbation, Perturbation], seed: int
) -> None:
    term = InventedTerm(text)
    assume(pair[0].eligible(term) and pair[1].eligible(term))
    query = perturb_pair(random.Random(seed), term, pair)
    assume(query is not None)
    assert query is not None
    found = Matcher.from_terms([text]).match(query)
    assert found is not None, (query, pair[0].name, pair[1].name)


# -- plain words match exactly within the allowance -------------------------------------

TERMS = ("zorblax", "mirvel", "tozz", "quendrific")
EXACT = Matcher.from_terms(TERMS)
_letters = "abcdefghijklmnopqrstuvwxyz"


@st.composite
def near_words(draw: st.DrawFn) -> str:
    """A term after up to three random edits, or a random lower-case word."""
    if draw(st.booleans()):
        return draw(st.text(alphabet=_letters, min_size=1, max_size=12))
    word = draw(st.sampled_from(TERMS))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(("insert", "delete", "substitute", "transpose")))
        at = draw(st.integers(0, max(0, len(word) - 1)))
        letter = draw(st.sampled_from(_letters))
        if op == "insert":
            word = word[:at] + letter + word[at:]
        elif op == "delete" and len(word) > 1:
            word = word[:at] + word[at + 1 :]
        elif op == "substitute":
            word = word[:at] + letter + word[at + 1 :]
        elif op == "transpose" and at + 1 < len(word):
            word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return word


def readings(words: list[str]) -> list[str]:
    """What §4 lets a query of plain lower-case words match as: each word, and each
    stretch of a run of three or more single letters (``a z o r b`` holds ``zorb``)."""
    out: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if len(run) >= 3:
            out += ["".join(run[i:j]) for i in range(len(run)) for j in range(i + 1, len(run) + 1)]
        else:
            out += run
        run = []
        if word:
            out.append(word)
    return [collapse(r) for r in out]


CANONICAL_TERMS = tuple(collapse(t) for t in TERMS)  # "tozz" is "toz"


def within_allowance(reading: str) -> bool:
    return any(OSA.distance(reading, t) <= allowance(len(t)) for t in CANONICAL_TERMS)


@settings(max_examples=600, deadline=None)
@given(st.lists(near_words(), min_size=1, max_size=5))
def test_plain_words_match_only_within_the_allowance(words: list[str]) -> None:
    query = " ".join(words)
    if EXACT.match(query) is not None:
        assert any(within_allowance(r) for r in readings(words)), query


@settings(max_examples=600, deadline=None)
@given(st.lists(near_words(), min_size=1, max_size=5))
def test_plain_words_within_the_allowance_always_match(words: list[str]) -> None:
    query = " ".join(words)
    near = [r for r in readings(words) if within_allowance(r)]
    if near:
        assert EXACT.match(query) is not None, (query, near)


def test_punctuated_letters_of_two_words_with_edits() -> None:
    """A run of single letters (step 7) spans the spaces between the words that
    punctuation spelt out letter by letter; those words are still matched
    fuzzily (found by test_a_match_survives_two_evasions)."""
    for term, query in [
        ("babarb babababai", "b&a&b&a&r&b z&b&a&h&b&a&b&a&b&a&i"),
        ("bababababrai bababrarb", "b*a*b*a*b*a*b*a*k*b*a*i b*a*l*b*a*k*b*r*a*r*b"),
        ("zorblax", "q.u.u.x z.o.r.b.l.i.x"),
    ]:
        found = Matcher.from_terms([term]).match(query)
        assert found is not None, query
        assert found.distance > 0
    # Letters spaced with nothing but spaces tell no words apart: one run, as before.
    (token,) = canonical_text("z o r b l i x q u u x").tokens
    assert token.inner and not token.spaces
    (token,) = canonical_text("z.o.r b.l.i.x").tokens
    assert token.spaces == (3,)
