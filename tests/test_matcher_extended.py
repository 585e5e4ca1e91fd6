"""``Matcher.extended``: a matcher grown from another by the terms added to its lists
answers every query exactly as one built from those lists does.

Terms are invented words (the quality evaluation's, and a few here); nothing here is
a real search term.
"""

from __future__ import annotations

import dataclasses
import gc
import pickle
import random

import pytest

from bench.reload_memo import count_lookups
from deterrence.evaluation import EvalConfig, build_cases
from deterrence.lists import Rule, Term, TermList
from deterrence.matcher import Matcher


def without_some_terms(
    lists: list[TermList], rng: random.Random, share: float = 0.125
) -> list[TermList]:
    """``lists`` with about ``share`` of their terms taken out, wherever they stood."""
    return [
        dataclasses.replace(tl, terms=[t for t in tl.terms if rng.random() > share] or tl.terms[:1])
        for tl in lists
    ]


def test_a_grown_matcher_answers_every_evaluation_query_as_a_built_one() -> None:
    """Every query of a small quality evaluation (every evasion class of DESIGN §4,
    phrases, substrings, Cyrillic and CJK terms, allow phrases, rules, innocent
    searches in six languages), against lists an eighth of whose terms were added."""
    config = EvalConfig(seed=5, per_class=25, innocent_queries=600, list_terms=200)
    fixture, classes = build_cases(config)
    rng = random.Random(5)
    compared = found_only_by_the_added = 0
    for name, lists in fixture.lists.items():
        base = Matcher(without_some_terms(lists, rng))
        grown = base.extended(lists)
        assert grown is not None, name
        built = Matcher(lists)
        assert grown.term_count == built.term_count
        for case_class in classes:
            if case_class.matcher != name:
                continue
            for case in case_class.cases:
                expected = built.match(case.query)
                assert grown.match(case.query) == expected, case.query
                compared += 1
                found_only_by_the_added += expected is not None and base.match(case.query) is None
    assert compared > 1000
    assert found_only_by_the_added > 20  # the added terms are found, not only the old ones


INVENTED = TermList(
    id="invented",
    category="testing",
    terms=[Term("zorblax", True), Term("blorvish tanquel", True)],
    allow=("report quendrific", "report zorblax"),
    rules=(Rule("pair", (("glimmerdusk",), ("skelvat",))),),
)


def test_the_terms_added_are_found_with_every_kind_of_term_beside_them() -> None:
    old = INVENTED
    added = [
        Term("quendrific", True),  # inside the allow phrase already there: cancelled
        Term("tanquel mirvelwort", True),  # a word the list has already
        Term("flarnish", True, substring=True),  # the automaton is built again
        Term("桥鲸笔", True),  # the automaton of scripts without spaces too
        Term("зорбляк", True),
        Term("tozzlewick", False),
    ]
    new = dataclasses.replace(old, terms=[added[0], *old.terms, *added[1:]], version="2")
    grown = Matcher([old]).extended([new])
    built = Matcher([new])
    assert grown is not None
    queries = [
        "quendrific",
        "report quendrific",
        "tanquel mirvelwort",
        "tanqel mirvelwort",
        "xxflarnishyy",
        "一桥鲸笔二",
        "зорбляк",
        "tozzlewick",
        "tozzlewik",
        "zorblax",
        "glimmerdusk skelvat",
        "sublime kitten",
    ]
    answers = [grown.match(q) for q in queries]
    assert answers == [built.match(q) for q in queries]
    assert [a is not None for a in answers] == [
        True, False, True, True, True, True, True, True, False, True, True, False,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"terms": [Term("blorvish tanquel", True)]},  # zorblax removed
        {"terms": [Term("zorblax", False), Term("blorvish tanquel", True)]},  # made exact
        {"allow": ("report zorblax", "zorblax news")},
        {"rules": ()},
        {"action": "warn"},
        {"category": "other"},
        {"fuzzy": False},
    ],
)
def test_any_change_but_added_terms_is_not_grown(change: dict[str, object]) -> None:
    changed = dataclasses.replace(INVENTED, **change)  # type: ignore[arg-type]
    assert Matcher([INVENTED]).extended([changed]) is None


def test_a_list_more_or_less_is_not_grown_and_other_fields_may_change() -> None:
    first = TermList(id="one", category="testing", terms=[Term("zorblax", True)])
    second = TermList(id="two", category="testing", terms=[Term("quendrific", True)])
    matcher = Matcher([first])
    assert matcher.extended([first, second]) is None
    assert Matcher([first, second]).extended([first]) is None
    renamed = dataclasses.replace(
        first, name="Renamed", version="7", source="elsewhere", tests_match=("zorblax",)
    )
    grown = matcher.extended([renamed])
    assert grown is not None and grown.lists == (renamed,)
    assert grown.match("zorblaks") == matcher.match("zorblaks")


def test_a_grown_matcher_shares_what_the_added_terms_leave_and_pickles() -> None:
    """Tables the added words do not go into are its base's own, not copies; so a
    reload never empties (pieces.release) a retired matcher that the one in
    service grew from (deterrence.reload)."""
    words = ["zorblax", "quendrific", "mirvelwort", "blorvish tanquel", "flarnish"]
    more = ["tozzlewick"]  # ten letters: into the part tables, not the deletions
    old = TermList(id="invented", category="testing", terms=[Term(w, True) for w in words * 30])
    new = dataclasses.replace(old, terms=[*old.terms, *(Term(w, True) for w in more)])
    base = Matcher([old])
    grown = base.extended([new])
    assert grown is not None
    tables = grown._fuzzy._tables
    shared = [name for name, table in tables.items() if table is base._fuzzy._tables.get(name)]
    assert shared and len(shared) < len(tables)
    assert grown._fuzzy._deletions is base._fuzzy._deletions
    # Lookup plans: whole where they read no copied table, else probe by probe.
    plans, base_plans = grown._fuzzy._plans, base._fuzzy._plans
    assert any(plans[n] is base_plans[n] for n in plans)
    redone = [n for n in plans if plans[n] is not base_plans[n]]
    assert redone
    for n in redone:
        for probe in plans[n]:
            reads_a_shared_table = any(probe[0] == tables[name].get for name in shared)
            assert any(probe is old for old in base_plans[n]) == reads_a_shared_table
    queries = ["zorblaks", "quendrifc", "tozzlewik", "skelvat vornsh", "glimerdusk", "kitten"]
    expected = [Matcher([new]).match(q) for q in queries]
    assert [grown.match(q) for q in queries] == expected
    assert [pickle.loads(pickle.dumps(grown)).match(q) for q in queries] == expected


def test_a_grown_matcher_leaves_the_cycle_collector_no_big_container_to_walk() -> None:
    """Its copies of its base's big dicts, and its tuples as long as the lists, are
    not tracked once it is made: each would otherwise be walked whole by young
    collections in the seconds after a reload, and by every full one until then
    (5,000 terms: 2-10 ms each in bench.soak's proxy)."""
    config = EvalConfig(seed=7, per_class=1, innocent_queries=10, list_terms=300)
    fixture, _ = build_cases(config)
    lists = [tl for name in sorted(fixture.lists) for tl in fixture.lists[name]]
    base = Matcher(lists)
    gc.collect()  # base's containers untracked, as in a server after its first collections
    more = [Term("tozzlewick", True), Term("skelvat vornish", True), Term("glimmerdusk", True)]
    longer = [dataclasses.replace(lists[0], terms=[*lists[0].terms, *more]), *lists[1:]]
    grown = base.extended(longer)
    assert grown is not None and grown.grown_by == 3
    containers: dict[str, object] = {
        f"fuzzy table {name}": table
        for name, table in grown._fuzzy._tables.items()
        if table is not base._fuzzy._tables.get(name)
    }
    assert containers  # the new words went into copies
    containers["phrases"] = grown._phrases
    containers["words"] = grown._words
    for column in dataclasses.fields(grown._patterns):
        containers[f"patterns.{column.name}"] = getattr(grown._patterns, column.name)
    assert [name for name, container in containers.items() if gc.is_tracked(container)] == []
    assert grown.match("tozzlewik") is not None


def test_a_grown_matcher_completes_the_words_its_bases_looked_up_and_answers_as_built() -> None:
    """Grown matchers share their base's word memo (deterrence.matcher._Lineage):
    candidates a base found are completed with the words added since, not looked
    up again. Three growths, each after the last matcher answered every query,
    then a sibling of the last: each answers every evaluation query as a matcher
    built from its lists does."""
    config = EvalConfig(seed=7, per_class=15, innocent_queries=300, list_terms=160)
    fixture, classes = build_cases(config)
    rng = random.Random(7)
    for name, lists in fixture.lists.items():
        queries = [c.query for cc in classes if cc.matcher == name for c in cc.cases]
        # A few terms a growth, as lists usually change (many more: looked up anew).
        stages = [without_some_terms(lists, rng, 0.02)]
        for _ in range(2):
            stages.insert(0, without_some_terms(stages[0], rng, 0.02))
        stages.append(lists)
        matcher = Matcher(stages[0])
        for query in queries:
            matcher.match(query)
        for stage in stages[1:]:
            grown = matcher.extended(stage)
            assert grown is not None
            assert grown._word_memo is matcher._word_memo
            built = Matcher(stage)
            looked_up, fresh = count_lookups(grown), count_lookups(built)
            for query in queries:
                assert grown.match(query) == built.match(query), (name, query)
            # Words its bases looked up are completed, not looked up again.
            assert looked_up[0] < fresh[0] / 4, (looked_up, fresh)
            matcher, base = grown, matcher
        # A sibling's entries (or a retired matcher's) are looked up anew, both ways.
        sibling = base.extended(lists)
        assert sibling is not None
        for query in reversed(queries):
            assert sibling.match(query) == built.match(query), (name, query)
        matcher._query_memo.forget(lambda: None)  # its answers: from its words again
        for query in queries:
            assert matcher.match(query) == built.match(query), (name, query)


def test_a_word_a_base_looked_up_finds_a_term_added_since() -> None:
    base = Matcher([INVENTED])
    assert base.match("tozzlewik mirvelwort") is None  # both words looked up, nothing near
    new = dataclasses.replace(INVENTED, terms=[*INVENTED.terms, Term("tozzlewick", True)])
    grown = base.extended([new])
    assert grown is not None
    looked_up = count_lookups(grown)
    found = grown.match("tozzlewik mirvelwort")
    assert found is not None and found.term == "tozzlewick" and found.distance == 1
    assert looked_up == [0]  # completed from the base's candidates, not looked up
    assert base.match("tozzlewik") is None  # the base's own answers stay its own
