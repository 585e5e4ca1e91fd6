"""Matching quality (DESIGN §4 contract, §7 targets).

Two halves:

- hand-written examples, one group per evasion class and per negative: they are the
  readable version of §4 (with ``lime`` on a list, ``sublime`` must not match);
- the generated evaluation of :mod:`deterrence.evaluation` at a moderate size, which
  asserts the §7 targets: recall >= 99 % overall and >= 97 % in every class, false
  positives <= 0.1 % in every negative class and over the innocent queries.

Every term here is invented (``zorblax``, ``quendrific`` ...); ``lime`` is an innocuous
stand-in for a short term.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deterrence.evaluation import (
    FALSE_POSITIVE_CLASSES,
    FALSE_POSITIVE_TARGET,
    RECALL_CLASS_TARGET,
    RECALL_CLASSES,
    RECALL_OVERALL_TARGET,
    EvalConfig,
    Report,
    build_cases,
    evaluate,
    format_report,
)
from deterrence.matcher import Matcher

LIST = """\
id = "invented"
category = "testing"
terms = [
  "zorblax",                                  # 7 letters: 1 edit allowed
  "quendrific",                               # 10 letters: 2 edits allowed
  "blorvish tanquel",                         # a phrase
  "lime",                                     # 4 letters: exact only (a stand-in)
  { term = "tozzlewick", fuzzy = false },
  { term = "flarnish", substring = true },
  { term = "vrit tuskgult", fuzzy = false },
  "зорбляк",                                  # invented Cyrillic
  "桥鲸笔",                                   # invented Han
  "ゾルブラク",                               # invented Katakana
]
allow = ["report zorblax"]

[[rules]]
id = "pair"
all_of = [["glimmerdusk", "vornish"], ["skelvat"]]
"""

SHORT_ALLOW_LIST = """\
id = "short-allow"
category = "testing"
terms = ["mirveltok"]
allow = ["of mirveltok"]
"""


@pytest.fixture(scope="module")
def m(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    folder: Path = tmp_path_factory.mktemp("lists")
    (folder / "invented.toml").write_text(LIST, encoding="utf-8")
    (folder / "short-allow.toml").write_text(SHORT_ALLOW_LIST, encoding="utf-8")
    return Matcher.from_path(folder)


def term(m: Matcher, query: str) -> str | None:
    found = m.match(query)
    return None if found is None else found.term or f"rule:{found.rule}"


# -- recall: one group per evasion class of §4 --------------------------------------


def test_case(m: Matcher) -> None:
    assert term(m, "ZORBLAX") == "zorblax"
    assert term(m, "ZorBlax") == "zorblax"


def test_embedded_in_a_longer_query(m: Matcher) -> None:
    assert term(m, "cheap zorblax videos") == "zorblax"


def test_leet_digits(m: Matcher) -> None:
    assert term(m, "z0rbl4x") == "zorblax"
    assert term(m, "qu3ndr1f1c") == "quendrific"


def test_leet_symbols(m: Matcher) -> None:
    assert term(m, "zorbl@x") == "zorblax"
    assert term(m, "zorb|ax") == "zorblax"
    assert term(m, "quendr!fic") == "quendrific"


def test_spaced_letters(m: Matcher) -> None:
    assert term(m, "z o r b l a x") == "zorblax"
    assert term(m, "buy z o r b l a x now") == "zorblax"


def test_symbols_at_the_edges_of_words_and_spaced_letters(m: Matcher) -> None:
    # @ $ ! | are letters inside a word and may be punctuation at its edge (§4 5-7).
    assert term(m, "zorblax!") == "zorblax"
    assert term(m, "$zorblax") == "zorblax"
    assert term(m, "!t o z z l e w i c k") == "tozzlewick"  # fuzzy = false
    assert term(m, "t o z z l e w i c k|") == "tozzlewick"
    assert term(m, "t o z! z l e w i c k") == "tozzlewick"
    assert term(m, "t.o.z!.z.l.e.w.i.c.k") == "tozzlewick"
    assert term(m, "t o z z l e @ w i c k") == "tozzlewick"
    assert term(m, "!v r i t tuskgult") == "vrit tuskgult"  # a 4-letter word of a phrase
    assert m.match("report !z o r b l a x") is None  # the allow phrase
    assert m.match("!sublime") is None
    assert m.match("sub!lime") is None  # inside a word, a letter: "subilime"


def test_punctuation_between_letters(m: Matcher) -> None:
    assert term(m, "z.o.r.b.l.a.x") == "zorblax"
    assert term(m, "zor-blax") == "zorblax"
    assert term(m, "zor_blax") == "zorblax"
    assert term(m, "zo*rb'lax") == "zorblax"


def test_repeated_letters(m: Matcher) -> None:
    assert term(m, "zorrrblaaax") == "zorblax"
    assert term(m, "tozzzlewiiick") == "tozzlewick"  # collapses on both sides


def test_one_edit_in_5_to_8_letters(m: Matcher) -> None:
    assert term(m, "zorblx") == "zorblax"  # deletion
    assert term(m, "zorblaxe") == "zorblax"  # insertion
    assert term(m, "zorblex") == "zorblax"  # substitution
    assert term(m, "zorbalx") == "zorblax"  # transposition


def test_two_edits_in_9_or_more_letters(m: Matcher) -> None:
    assert term(m, "qeundrifc") == "quendrific"  # transposition + deletion
    assert term(m, "quendrafik") == "quendrific"  # two substitutions


def test_two_transpositions_across_part_boundaries(m: Matcher) -> None:
    assert term(m, "qunedirfic") == "quendrific"


def test_cyrillic_lookalikes(m: Matcher) -> None:
    assert term(m, "zоrblах") == "zorblax"  # о, а, х are Cyrillic


def test_greek_lookalikes(m: Matcher) -> None:
    assert term(m, "zοrblαx") == "zorblax"  # ο, α are Greek


def test_full_width(m: Matcher) -> None:
    assert term(m, "ｚｏｒｂｌａｘ") == "zorblax"


def test_mathematical_letters(m: Matcher) -> None:
    assert term(m, "𝐳𝐨𝐫𝐛𝐥𝐚𝐱") == "zorblax"
    assert term(m, "𝓏ℴ𝓇𝒷𝓁𝒶𝓍") == "zorblax"
    assert term(m, "𝔷𝔬𝔯𝔟𝔩𝔞𝔵") == "zorblax"


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b",  # zero-width space
        "\u200c",  # zero-width non-joiner
        "\u200d",  # zero-width joiner
        "\u2060",  # word joiner
        "\u00ad",  # soft hyphen
        "\ufeff",  # byte order mark
        "\u202e",  # right-to-left override
        "\u2066",  # left-to-right isolate
        "\u180e",  # Mongolian vowel separator
        "\x00",  # NUL
        "\x9f",  # a C1 control
    ],
)
def test_invisible_characters(m: Matcher, invisible: str) -> None:
    assert term(m, f"zor{invisible}blax") == "zorblax"
    assert term(m, f"{invisible}zorblax{invisible}") == "zorblax"


def test_diacritics(m: Matcher) -> None:
    assert term(m, "zörbláx") == "zorblax"
    assert term(m, "zo\u0301rblax") == "zorblax"  # combining acute accent


def test_plural(m: Matcher) -> None:
    assert term(m, "zorblaxs") == "zorblax"


def test_joined_phrase(m: Matcher) -> None:
    assert term(m, "blorvish tanquel") == "blorvish tanquel"
    assert term(m, "blorvishtanquel") == "blorvish tanquel"


def test_separator_split_phrase(m: Matcher) -> None:
    assert term(m, "blorvish-tanquel") == "blorvish tanquel"
    assert term(m, "blorvish.tanquel") == "blorvish tanquel"
    assert term(m, "blorvish_tanquel") == "blorvish tanquel"


def test_phrase_split_by_spaces_and_punctuation() -> None:
    three = Matcher.from_terms(["blorvish tanquel mirvo"])
    assert term(three, "blorvish tanquel.mirvo") == "blorvish tanquel mirvo"
    assert term(three, "blorvish-tanquel mirvo") == "blorvish tanquel mirvo"


def test_joined_phrase_with_a_letter_doubled_across_the_join(m: Matcher) -> None:
    assert term(m, "vrit-tuskgult") == "vrit tuskgult"
    assert term(m, "vrittuskgult") == "vrit tuskgult"


def test_two_evasions_combined(m: Matcher) -> None:
    assert term(m, "Z0RB-L4X") == "zorblax"  # case + leet + punctuation
    assert term(m, "ｚｏｒｂｌｘ") == "zorblax"  # full-width + deletion
    assert term(m, "z o r r b l a x") == "zorblax"  # spaced + repeated


def test_cyrillic_terms(m: Matcher) -> None:
    assert term(m, "купить зорбляк") == "зорбляк"
    assert term(m, "ЗОРБЛЯК") == "зорбляк"
    assert term(m, "зорбляки") == "зорбляк"  # 7 letters: 1 edit


def test_terms_in_scripts_without_spaces_match_anywhere(m: Matcher) -> None:
    assert term(m, "今天桥鲸笔的照片") == "桥鲸笔"
    assert term(m, "ゾルブラク") == "ゾルブラク"
    assert term(m, "ｿﾞﾙﾌﾞﾗｸ") == "ゾルブラク"  # half-width Katakana


def test_substring_terms_match_inside_words(m: Matcher) -> None:
    assert term(m, "superflarnishes") == "flarnish"


def test_substring_terms_are_fuzzy_too(m: Matcher) -> None:
    assert term(m, "flarnsh") == "flarnish"


def test_co_occurrence_rules(m: Matcher) -> None:
    assert term(m, "vornish skelvat") == "rule:pair"
    assert term(m, "skelvat cheap glimmerdusk") == "rule:pair"  # any order, anywhere


# -- negatives ------------------------------------------------------------------------


def test_short_terms_never_match_inside_longer_words(m: Matcher) -> None:
    assert term(m, "fresh lime juice") == "lime"
    for word in ("sublime", "slime", "limerick", "limelight", "limes"):
        assert m.match(word) is None, word


def test_short_terms_must_be_exact(m: Matcher) -> None:
    for word in ("line", "lima", "like", "lmie", "lim"):
        assert m.match(word) is None, word


def test_misspellings_beyond_the_allowance(m: Matcher) -> None:
    assert m.match("zrblx") is None  # 2 edits in 7 letters
    assert m.match("qendrfc") is None  # 3 edits in 10 letters


def test_fuzzy_false_terms_must_be_exact(m: Matcher) -> None:
    assert term(m, "tozzlewick") == "tozzlewick"
    assert m.match("tozzlewik") is None


def test_allow_phrases_cancel_the_match_they_cover(m: Matcher) -> None:
    assert m.match("report zorblax") is None
    assert m.match("how to report zorblax online") is None
    assert term(m, "zorblax report") == "zorblax"  # not the allow phrase


def test_an_allow_phrase_with_a_short_word_cancels_only_itself(m: Matcher) -> None:
    assert m.match("of mirveltok") is None
    assert term(m, "mirveltok") == "mirveltok"


def test_rules_need_every_group(m: Matcher) -> None:
    assert m.match("vornish") is None
    assert m.match("glimmerdusk vornish") is None  # both from the same group


# -- the generated evaluation -----------------------------------------------------------


def _require_wordfreq() -> None:
    try:
        import wordfreq  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("wordfreq is not installed: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def report() -> Report:
    _require_wordfreq()
    result = evaluate(
        EvalConfig(per_class=150, innocent_queries=6000, list_terms=1000, stand_in_words=1500)
    )
    print(format_report(result))  # shown by pytest when a test fails
    return result


@pytest.mark.slow
def test_every_class_of_the_evaluation_is_present(report: Report) -> None:
    assert tuple(c.name for c in report.of_kind("recall")) == RECALL_CLASSES
    assert tuple(c.name for c in report.of_kind("false_positive")) == FALSE_POSITIVE_CLASSES
    assert all(c.total >= 100 for c in report.classes), [(c.name, c.total) for c in report.classes]


@pytest.mark.slow
@pytest.mark.parametrize("name", RECALL_CLASSES)
def test_recall_of_each_class_is_at_least_97_percent(report: Report, name: str) -> None:
    result = report[name]
    assert result.errors == 0, result.failures
    assert result.rate >= RECALL_CLASS_TARGET, (f"{result.rate:.2%}", result.failures)


@pytest.mark.slow
@pytest.mark.parametrize("name", FALSE_POSITIVE_CLASSES)
def test_false_positives_of_each_class_are_at_most_a_tenth_of_a_percent(
    report: Report, name: str
) -> None:
    result = report[name]
    assert result.errors == 0, result.failures
    assert result.rate <= FALSE_POSITIVE_TARGET, (f"{result.rate:.3%}", result.failures)


@pytest.mark.slow
def test_overall_recall_and_false_positives(report: Report) -> None:
    assert report.recall >= RECALL_OVERALL_TARGET
    assert report.false_positive_rate <= FALSE_POSITIVE_TARGET
    assert sum(c.total for c in report.innocent) >= 5994


@pytest.mark.slow
def test_the_evaluation_is_deterministic() -> None:
    _require_wordfreq()
    config = EvalConfig(seed=3, per_class=20, innocent_queries=120, list_terms=100)
    first, second = build_cases(config)[1], build_cases(config)[1]
    assert first == second
    other = EvalConfig(seed=4, per_class=20, innocent_queries=120, list_terms=100)
    assert first != build_cases(other)[1]
