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

from deterrence.evaluation import EvalConfig, build_cases
from deterrence.lists import Rule, Term, TermList
from deterrence.matcher import Matcher


def without_some_terms(lists: list[TermList], rng: random.Random) -> list[TermList]:
    """``lists`` with about one term in eight taken out, wherever it stood."""
    return [
        dataclasses.replace(tl, terms=[t for t in tl.terms if rng.random() > 0.125] or tl.terms[:1])
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
