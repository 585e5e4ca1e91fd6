"""Matching rules (DESIGN §4) and the Match explanation. The full evasion
matrix with recall figures is in test_quality.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_text import SPACED_WITH_SYMBOLS

from deterrence.lists import Rule, Term, TermList
from deterrence.matcher import Matcher, allowance


def make(**fields: object) -> TermList:
    base: dict[str, object] = {"id": "invented", "category": "testing"}
    base.update(fields)
    return TermList(**base)  # type: ignore[arg-type]


MATCHER = Matcher(
    [
        make(
            terms=(
                Term("zorblax", True),
                Term("lime", True),
                Term("quendrific mirvel", True),
                Term("tozzlewick", False),
                Term("flarn", True, substring=True),
                Term("中文字", True),
                Term("хорошо", True),
            ),
            allow=("report zorblax",),
            rules=(Rule("pair", (("glimp", "vornish"), ("archive",))),),
        )
    ]
)


def term_of(query: str) -> str | None:
    match = MATCHER.match(query)
    return None if match is None else (match.term or f"rule:{match.rule}")


def test_allowance_by_length() -> None:
    assert [allowance(n) for n in (2, 4, 5, 8, 9, 14)] == [0, 0, 1, 1, 2, 2]


def test_word_boundaries() -> None:
    assert term_of("lime") == "lime"
    assert term_of("fresh lime juice") == "lime"
    assert term_of("sublime") is None
    assert term_of("limes") is None  # 4 letters: exact only
    assert term_of("lame") is None


def test_words_inside_a_run_of_spaced_letters() -> None:
    # A run of spaced letters is one token; a term word may be any stretch of it.
    assert term_of("x z o r b l a x") == "zorblax"
    assert term_of("z o r b l a x q") == "zorblax"
    assert term_of("q x z o r b l a x v w") == "zorblax"
    # A phrase goes on from a stretch that ends the run, into one that starts it.
    assert term_of("x q u e n d r i f i c mirvel") == "quendrific mirvel"
    assert term_of("quendrific m i r v e l x") == "quendrific mirvel"
    # ... but not from a stretch inside it (3 letters more: beyond the allowance).
    assert term_of("q u e n d r i f i c x y z mirvel") is None
    assert term_of("report z o r b l a x") is None  # the allow phrase, spaced
    assert term_of("q l i m e x") == "lime"


def test_short_words_inside_a_run_of_spaced_letters() -> None:
    # Stretches shorter than a vocabulary word's kept beginning are tried from
    # every start; longer ones only where some word begins.
    matcher = Matcher.from_terms(["zor", "qu", "vexil"])
    for query, term in [("x z o r y", "zor"), ("a q u b", "qu"), ("b v e x i l q", "vexil")]:
        match = matcher.match(query)
        assert match is not None and match.term == term, query
    assert matcher.match("x z o y q") is None


def test_substring_terms_match_inside_words() -> None:
    assert term_of("superflarnish") == "flarn"


def test_misspellings_within_the_allowance() -> None:
    assert term_of("zorblx") == "zorblax"  # deletion
    assert term_of("zorbalx") == "zorblax"  # transposition
    assert term_of("zorblaxs") == "zorblax"  # plural
    assert term_of("zurblix") is None  # two edits in a 7-letter word
    assert term_of("quendrifcc mirvl") == "quendrific mirvel"  # each word on its own allowance


def test_fuzzy_false_terms_must_be_exact() -> None:
    assert term_of("tozzlewick") == "tozzlewick"
    assert term_of("tozzlewik") is None


def test_phrases_match_adjacent_and_joined() -> None:
    assert term_of("quendrific mirvel") == "quendrific mirvel"
    assert term_of("quendrificmirvel") == "quendrific mirvel"
    assert term_of("quendrific-mirvel") == "quendrific mirvel"
    assert term_of("quendrific big mirvel") is None
    assert term_of("mirvel quendrific") is None


def test_no_space_scripts_and_cyrillic() -> None:
    assert term_of("我要中文字看") == "中文字"
    assert term_of("хорошо") == "хорошо"


def test_allow_phrases_cancel_overlapping_matches() -> None:
    assert term_of("how to report zorblax") is None
    assert term_of("report zorblax and zorblax") == "zorblax"


def test_rules_need_every_group() -> None:
    assert term_of("the vornish archive") == "rule:pair"
    assert term_of("archive of glimp") == "rule:pair"
    assert term_of("vornish glimp") is None


def test_most_severe_action_wins_and_every_hit_is_reported() -> None:
    matcher = Matcher(
        [
            make(id="counted", action="count", terms=(Term("zorblax", True),)),
            make(id="blocked", action="block", terms=(Term("zorblax", True),)),
            make(id="warned", action="warn", terms=(Term("zorblax", True),)),
        ]
    )
    match = matcher.match("zorblax")
    assert match is not None
    assert (match.action, match.list_id) == ("block", "blocked")
    assert [hit.list_id for hit in match.hits] == ["blocked", "warned", "counted"]


def test_a_match_explains_its_transforms() -> None:
    match = MATCHER.match("Z0RBL4X")
    assert match is not None
    assert set(match.transforms) == {"case", "leet"}
    assert match.explain()["term"] == "zorblax"
    fuzzy = MATCHER.match("zorblx")
    assert fuzzy is not None and fuzzy.distance == 1 and "edit_distance" in fuzzy.transforms


def test_empty_lists_and_empty_queries() -> None:
    assert Matcher([]).match("zorblax") is None
    assert MATCHER.match("") is None
    assert MATCHER.match("   \u200b  ") is None


def test_a_matcher_is_shared_safely_across_threads() -> None:
    queries = ["zorblax", "weather", "quendrificmirvel", "sublime"] * 200
    expected = [term_of(q) for q in queries]
    results: list[list[str | None]] = []

    def work() -> None:
        results.append([term_of(q) for q in queries])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_a_phrase_with_some_words_joined_by_punctuation_and_some_spaced() -> None:
    matcher = Matcher.from_terms(["vropdrolt stolshark fregsebxe"])
    assert matcher.match("esse vropdrolt+stolshark fregsebxe dl")
    assert matcher.match("vropdrolt stolshark_fregsebxe")


def test_two_transpositions_one_across_a_part_boundary() -> None:
    assert Matcher.from_terms(["gourxurbthog"]).match("goruxurtbhog")


def test_allow_phrases_match_exactly_so_a_misspelling_cannot_cancel_a_match() -> None:
    assert term_of("reprot zorblax") == "zorblax"
    assert term_of("report zorblax") is None


def test_a_misspelt_substring_term_still_matches_as_a_whole_word() -> None:
    matcher = Matcher([make(terms=(Term("kvibmam", True, substring=True),))])
    assert matcher.match("kvbimam ucrania")  # fuzzy, as a word
    assert matcher.match("superkvibmamish")  # exact, inside a word
    assert not matcher.match("superkvbimamish")  # not fuzzy inside words


SHIPPED = Matcher.from_path(Path(__file__).resolve().parent.parent / "keyword_lists")


@pytest.mark.parametrize("query", [*SPACED_WITH_SYMBOLS, "look up !t o z z l e w i c k now"])
def test_symbols_at_the_edges_of_spaced_letters_do_not_hide_an_exact_term(query: str) -> None:
    """The shipped lists' ``tozzlewick`` is ``fuzzy = false``: a symbol beside one
    of its spaced letters must read as the punctuation it may be (DESIGN §4, 6-7)."""
    match = SHIPPED.match(query)
    assert match is not None and match.term == "tozzlewick"


def test_symbols_at_the_edges_of_short_terms_and_phrases() -> None:
    matcher = Matcher.from_terms(["blix", "quendrific mirvel"], fuzzy=False)
    for query, term in [
        ("!b l i x", "blix"),
        ("b l i x!", "blix"),
        ("!blix", "blix"),
        ("!q u e n d r i f i c mirvel", "quendrific mirvel"),
        ("quendrific m i r v e l!", "quendrific mirvel"),
        ("!q.u.e.n.d.r.i.f.i.c m.i.r.v.e.l", "quendrific mirvel"),
    ]:
        match = matcher.match(query)
        assert match is not None and match.term == term, query
    # The first symbol a letter, the last one punctuation.
    assert Matcher.from_terms(["sblix"], fuzzy=False).match("$blix!")


def test_symbols_at_the_edges_of_spaced_letters_with_allow_phrases_and_rules() -> None:
    assert term_of("report !z o r b l a x") is None  # the allow phrase, spaced
    assert term_of("!g l i m p archive!") == "rule:pair"
    assert term_of("!sublime") is None
    assert term_of("sublime!") is None
    assert term_of("sub!lime") is None


def test_a_run_read_with_its_edge_symbols_as_letters_still_matches() -> None:
    """``$i`` is also the word ``si``, which ends the run before it: ``shyzsk`` is
    a word of its own there, one edit from the term."""
    matcher = Matcher.from_terms(["shysk"])
    assert matcher.match("s.h.y.z.s.k.$i.l")
    assert matcher.match("s h y z s k $i l")
    assert not matcher.match("s h y z s k i l")


def test_words_spelt_out_in_a_run_form_phrases_with_the_words_around_it() -> None:
    """``s.t.o.l.s.h.r.a.k s.e.e`` is one run of single letters (step 7); the
    stretches between its spaces are read as words, misspelt as any word, and
    with the words before and after the run."""
    matcher = Matcher.from_terms(["vropdrolt stolshark"])
    assert matcher.match("vropdrolt s.t.o.l.s.h.r.a.k s.e.e")
    assert matcher.match("s.e.e v.r.o.p.d.r.o.l.t.s stolshark")
    assert not matcher.match("vropdrolt k.e.e.p s.t.o.l.s.h.a.r.k")


def test_look_alikes_joined_to_latin_by_punctuation_are_read_as_latin() -> None:
    assert term_of("zorbl-ах") == "zorblax"  # Cyrillic а and х
