"""A matcher travels from a child build in pieces, with a pause between them in
which other threads can run (deterrence.pieces)."""

from __future__ import annotations

import gc
import io
import sys

from test_reload import invented_terms

from deterrence import pieces
from deterrence.collector import collector_paused
from deterrence.lists import load_lists
from deterrence.matcher import Matcher
from deterrence.resources import KEYWORD_LISTS_DIR


def _round_trip(obj: object) -> tuple[object, int]:
    file = io.BytesIO()
    pieces.dump(obj, file)
    file.seek(0)
    pauses = []
    loaded = pieces.load(file, lambda: pauses.append(1))
    return loaded, len(pauses)


def test_big_containers_come_in_pieces_and_keep_their_order_and_sharing() -> None:
    size = pieces.PIECE_ITEMS * 3 + 7
    table = {f"k{i}": (i, f"v{i}") for i in range(size)}
    members = set(range(size))
    obj = {"a": table, "b": [table, members], "small": {"x": 1}, "words": ("zorblax",) * 3}
    loaded, pauses = _round_trip(obj)
    assert loaded == obj
    assert list(loaded["a"]) == list(table)  # insertion order survives
    assert loaded["a"] is loaded["b"][0]  # one object, however often it is referred to
    # Two containers of four pieces each, a pause before each piece and before the end.
    assert pauses == 4 + 4 + 1


def test_an_object_dumped_whole_is_read_back_by_load_in_one_piece() -> None:
    lists = load_lists([KEYWORD_LISTS_DIR])
    file = io.BytesIO()
    pieces.dump_whole(("ok", lists), file)
    file.seek(0)
    pauses: list[int] = []
    assert pieces.load(file, lambda: pauses.append(1)) == ("ok", lists)
    assert pauses == [1]  # the one pause, after the root
    assert file.read() == b""  # read to the end


def test_objects_shared_between_the_root_and_the_pieces_stay_one_object() -> None:
    """The pieces go through a second pickler (no persistent_id, much faster); it
    continues the first one's memo, so a string met in the root and again in a
    piece is one string after loading, as in the matcher (its words tuple and its
    vocabulary's keys), and the pieces after a nested container too."""
    size = pieces.PIECE_ITEMS * 2 + 3
    words = tuple(f"word{i}" for i in range(size))
    fresh = [f"fresh{i}" for i in range(size)]  # first met in a piece, not in the root
    inner = {i: words[i] for i in range(size)}
    obj = {
        "words": words,
        "vocabulary": {w: i for i, w in enumerate(words)},
        "first": {i: fresh[i] for i in range(size)},
        "nested": {0: inner, **{i: fresh[i] for i in range(1, size)}},
        "after": set(fresh),
    }
    loaded, _ = _round_trip(obj)
    assert loaded == obj
    first = loaded["words"][0]
    assert next(iter(loaded["vocabulary"])) is first
    assert loaded["nested"][0][0] is first
    assert loaded["nested"][1] is loaded["first"][1]
    assert loaded["first"][5] in loaded["after"]
    assert any(w is loaded["first"][5] for w in loaded["after"])


def test_a_big_dict_of_tuples_arrives_untracked_by_the_collector() -> None:
    """With a young collection in the pause (as a reload's), a piece's tuples are
    untracked before they enter their dict, so the dict is never tracked and the
    collections after a reload do not walk it."""
    size = pieces.PIECE_ITEMS * 2 + 1
    obj = {"table": {f"k{i}": (f"v{i}", f"w{i}") for i in range(size)}, "set": set(range(size))}
    file = io.BytesIO()
    pieces.dump(obj, file)
    file.seek(0)
    with collector_paused():
        loaded = pieces.load(file, lambda: gc.collect(0))
    assert loaded == obj
    assert not gc.is_tracked(loaded["table"])
    assert not gc.is_tracked(loaded["table"]["k1"])


def test_nested_big_containers_are_filled_too() -> None:
    size = pieces.PIECE_ITEMS + 1
    inner = {i: i for i in range(size)}
    outer = {i: inner if i == 0 else i for i in range(size)}
    loaded, _ = _round_trip(outer)
    assert loaded == outer
    assert loaded[0] == inner


def test_a_matcher_in_pieces_gives_the_same_answers() -> None:
    words = invented_terms(3000)
    matcher = Matcher.from_terms(words)
    loaded, pauses = _round_trip(matcher)
    assert isinstance(loaded, Matcher)
    assert pauses > 10  # its index came in pieces
    for query in [*words[:200], words[0] + "s", words[1][:-1], "an innocent query", ""]:
        assert loaded.match(query) == matcher.match(query), query


def test_a_matcher_comes_an_attribute_a_piece() -> None:
    """Read whole, the matcher's lists, patterns and words were one pickle and one
    hold of the interpreter lock; each attribute is a piece of its own now, and
    the matcher is still one object wherever it is referred to."""
    matcher = Matcher.from_terms(invented_terms(50))  # no container big enough to split
    loaded, pauses = _round_trip({"matcher": matcher, "again": [matcher]})
    assert isinstance(loaded, dict)
    assert loaded["again"][0] is loaded["matcher"]
    attributes = vars(loaded["matcher"])
    assert attributes.keys() == vars(matcher).keys()
    assert pauses == len(attributes) + 1  # one per attribute, one before the end
    assert all(sys.intern(name) is name for name in attributes)  # as pickle's own


def test_release_empties_the_big_containers_a_piece_at_a_time() -> None:
    matcher = Matcher.from_terms(invented_terms(3000))
    vocabulary = matcher._vocabulary
    assert len(vocabulary) > pieces.PIECE_ITEMS
    pauses: list[int] = []
    pieces.release(matcher, lambda: pauses.append(1))
    assert vocabulary == {}
    assert len(pauses) > 10
    assert matcher.lists[0].terms  # public parts may be shared: left alone


def test_a_pause_handed_to_a_loop_waits_for_what_the_loop_had_ready() -> None:
    import asyncio
    import threading

    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pause = pieces.hand_over_to(loop)
        pause()  # on the loop's own thread: returns at once, never waits for itself

        def worker() -> None:
            loop.call_soon_threadsafe(order.append, "request")
            pause()
            order.append("piece")

        thread = threading.Thread(target=worker)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.001)

    asyncio.run(main())
    assert order == ["request", "piece"]
