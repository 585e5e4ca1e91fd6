"""deterrence.collector: pausing the cycle collector while survivors are built."""

from __future__ import annotations

import gc
import threading

from deterrence.collector import collector_paused, young_collection


def test_a_pause_inside_a_pause_is_the_outer_ones() -> None:
    assert gc.isenabled()
    with collector_paused() as outer:
        with collector_paused() as inner:
            assert outer and inner and not gc.isenabled()
        assert not gc.isenabled()  # the outer block still runs
    assert gc.isenabled()


def test_pauses_in_two_threads_end_when_both_have() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's block still runs
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused() as paused:
            assert not paused
            row = ("zorblax", str(len("zorblax")))
            young_collection(paused)()  # does nothing
            assert gc.is_tracked(row)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_young_collection_untracks_new_tuples_of_plain_values() -> None:
    with collector_paused() as paused:
        row = ("zorblax", str(len("zorblax")))
        assert gc.is_tracked(row)
        young_collection(paused)()
        assert not gc.is_tracked(row)
        table = dict.fromkeys(map(str, range(100)), 0)
        table["zorblax"] = row  # (a fresh one would track the dict)
        assert not gc.is_tracked(table)
