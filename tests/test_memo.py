"""The matcher's memo: bounded, invisible in answers, holding no query text,
absent from pickles."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

from deterrence.evaluation import EvalConfig, build_cases
from deterrence.matcher import Matcher
from deterrence.memo import Memo


def test_memo_keeps_at_most_two_generations() -> None:
    memo: Memo[int] = Memo(3)
    for number in range(10):
        memo.put(f"word{number}", number)
    assert len(memo) <= 6
    assert memo.get("word9", -1) == 9
    assert memo.get("word0", -1) == -1  # evicted long ago


def test_a_hit_in_the_previous_generation_survives_the_next_turn() -> None:
    memo: Memo[int] = Memo(2)
    memo.put("kept", 1)
    memo.put("other", 2)
    memo.put("third", 3)  # "kept" and "other" are now the previous generation
    assert memo.get("kept", -1) == 1  # copied forward
    memo.put("fourth", 4)
    memo.put("fifth", 5)
    assert memo.get("kept", -1) == 1


def test_size_zero_remembers_nothing() -> None:
    memo: Memo[int] = Memo(0)
    memo.put("zorblax", 1)
    assert memo.get("zorblax", -1) == -1
    assert len(memo) == 0


def test_the_memo_holds_no_text() -> None:
    memo: Memo[int] = Memo(10)
    query = "".join(["quendrific", " mirvel"])  # built at run time, not interned
    memo.put(query, 1)
    assert all(not isinstance(o, str) for o in gc.get_referents(memo._current))
    assert memo.get("quendrific mirvel", -1) == 1


def test_answers_are_the_same_with_and_without_the_memo() -> None:
    """Every query of a small evaluation, twice through a remembering matcher
    (first sight, then from the memo) and once through one without."""
    config = EvalConfig(seed=11, per_class=15, innocent_queries=300, list_terms=150)
    fixture, classes = build_cases(config)
    for case_class in classes:
        lists = fixture.lists[case_class.matcher]
        remembering, forgetting = Matcher(lists), Matcher(lists, memo_size=0)
        for case in case_class.cases:
            expected = forgetting.match(case.query)
            assert remembering.match(case.query) == expected, case.query
            assert remembering.match(case.query) == expected, case.query


def test_a_small_memo_under_churn_still_answers_right() -> None:
    terms = ["zorblax", "quendrific mirvel"]
    matcher = Matcher.from_terms(terms, memo_size=2)
    queries = ["zorblaks", "quendrifik mirvel", "sublime", "zorbIax", "mirvel", "kitten"] * 5
    expected = [Matcher.from_terms(terms, memo_size=0).match(q) for q in queries]
    assert [matcher.match(q) for q in queries] == expected
    assert len(matcher._query_memo) <= 4 and len(matcher._word_memo) <= 4


def test_a_pickled_matcher_arrives_with_an_empty_memo() -> None:
    matcher = Matcher.from_terms(["zorblax"])
    assert matcher.match("zorbalx")
    assert len(matcher._query_memo) > 0 and len(matcher._word_memo) > 0
    copy = pickle.loads(pickle.dumps(matcher))
    assert len(copy._query_memo) == 0 and len(copy._word_memo) == 0
    assert copy.match("zorbalx") == matcher.match("zorbalx")


def test_the_memo_size_is_a_setting(tmp_path: Path) -> None:
    from deterrence.reload import MatcherHolder
    from deterrence.resources import KEYWORD_LISTS_DIR
    from deterrence.settings import Settings

    settings = Settings(lists=[KEYWORD_LISTS_DIR], data_dir=tmp_path, match_memo_size=0)
    holder = MatcherHolder(settings)
    assert holder.matcher.memo_size == 0
    holder.matcher.match("zorblax")
    assert len(holder.matcher._query_memo) == 0
    assert MatcherHolder(settings.model_copy(update={"match_memo_size": 7})).matcher.memo_size == 7


def test_forget_drops_both_generations_pausing_after_each() -> None:
    memo: Memo[int] = Memo(2)
    for number, text in enumerate(["zorblax", "quendrific", "mirvelwort"]):
        memo.put(text, number)
    assert len(memo) == 3  # one generation full, one begun
    pauses: list[int] = []
    memo.forget(lambda: pauses.append(len(memo)))
    assert pauses == [1, 0] and memo.get("zorblax", -1) == -1
    memo.put("zorblax", 7)
    assert memo.get("zorblax", -1) == 7  # still a working memo


def test_a_reloaded_matcher_brings_its_own_empty_request_memo() -> None:
    matcher = Matcher.from_terms(["zorblax"])
    matcher.request_memo.put(b"q=zorblax", matcher.match("zorblax"))
    grown = matcher.extended(matcher.lists)
    assert grown is not None and len(grown.request_memo) == 0
    assert all(memo in matcher.memos for memo in (matcher.request_memo,))
    copy = pickle.loads(pickle.dumps(matcher))
    assert len(copy.request_memo) == 0


def test_answers_are_kept_packed_where_the_cycle_collector_never_walks() -> None:
    """A memo of matches held each as three tracked objects, and the word memo's
    dicts of candidates made it tracked, for every full collection to walk; packed,
    their dicts hold bytes and None, and stay untracked."""
    matcher = Matcher.from_terms(["zorblax", "quendrific mirvel"])
    queries = ["zorb1ax", "quendrifik mirvel", "kitten", "zorbIax quendrific mirvel"]
    first = [matcher.match(query) for query in queries]
    assert first[0] is not None and first[2] is None
    again = [matcher.match(query) for query in queries]  # from the memo
    assert again == first
    assert again[0] is not first[0]  # a fresh object each time: callers only read it
    matcher.request_memo.put(b"q=zorb1ax", first[0])
    assert matcher.request_memo.get(b"q=zorb1ax", None) == first[0]
    for memo in (matcher._query_memo, matcher.request_memo, matcher._word_memo):
        assert len(memo) > 0 and not gc.is_tracked(memo._current)
        assert all(type(v) is bytes or v is None for v in memo._current.values())
    assert matcher._candidates("zorblax") == {matcher._vocabulary["zorblax"]: 0}
    assert matcher._candidates("zorblax") == {matcher._vocabulary["zorblax"]: 0}  # memo
    copy = pickle.loads(pickle.dumps(matcher))
    assert copy.match("zorb1ax") == first[0] == copy.match("zorb1ax")
