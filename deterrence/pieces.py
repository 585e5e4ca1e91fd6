"""Pickle a large object graph as a run of small pickles, so that the process
reading it can hand the interpreter lock to other threads between them; and free
one the same way (``release``).

``pickle.loads`` of dicts, lists, strings and tuples is one C call that never
lets another thread run: a reload's matcher held the lock for 20–30 ms at
5,000 terms, and every request waiting meanwhile showed it (the soak). Here the
root object is written first with each big dict or set replaced by a
reference; their items follow in pieces of ``PIECE_ITEMS``. A plain object of
this package (the matcher) is replaced by a reference too, and its attributes
follow one a piece. The reader puts an empty container (or object) where each
reference stands and fills it as its pieces arrive, calling ``pause`` between
pieces. One unpickler reads the whole run, and the picklers that write it pass
one memo along, so an object shared by several pieces is still one object.

Whatever reconstructs itself while the run is read (``__setstate__``) must not
look inside a big container or a deferred object yet: it may still be empty
then. Lists stay whole for that reason: an extension type may rebuild itself
from one by index (pyahocorasick's automaton does), and a list is what such
code is given.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import asyncio  # the build child imports this module, and needs no event loop

__all__ = ["PIECE_ITEMS", "dump", "dump_whole", "hand_over", "hand_over_to", "load", "release"]

PIECE_ITEMS = 2_000
"""Items per piece: about a millisecond of unpickling for the matcher's tables."""

LOOP_TURN_WAIT = 0.05
"""How long ``hand_over_to``'s pause waits for the loop at most: a loop that is
stopping, or busy for longer, does not hold the work up for good."""

_KINDS: dict[type, str] = {dict: "dict", set: "set"}
_ATOMS = frozenset((str, int, tuple, bool, float, bytes, type(None)))
"""What the first pickler meets most, known without a call to ``_by_attribute``."""
_END = "end"


def hand_over() -> None:
    """A pause for another thread: releasing the interpreter lock lets one that
    waits for it take it."""
    time.sleep(0)


def hand_over_to(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """A pause for a worker thread that lets ``loop`` go first: it waits until
    the loop has run what it had ready (its requests), at most ``LOOP_TURN_WAIT``
    seconds. With ``hand_over`` alone, the thread wanted the lock back at once,
    and the loop gave it up every switch interval in the middle of answering
    requests. Call it on the loop's thread; from that thread, the pause is
    ``hand_over`` (waiting there for the loop would wait for itself)."""
    loop_thread = threading.get_ident()

    def pause() -> None:
        if threading.get_ident() == loop_thread:
            hand_over()
            return
        turn = threading.Event()
        try:
            loop.call_soon_threadsafe(turn.set)
        except RuntimeError:  # the loop has closed: nobody to wait for
            hand_over()
            return
        turn.wait(LOOP_TURN_WAIT)

    return pause


class _Writer(pickle.Pickler):
    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.deferred: list[Any] = []  # big containers and objects, in the order first met
        self._numbers: dict[int, int] = {}

    def persistent_id(self, obj: Any) -> tuple[str, int] | tuple[str, int, type] | None:
        cls: type = type(obj)
        kind = _KINDS.get(cls)
        if kind is None:
            if cls in _ATOMS or not _by_attribute(cls):
                return None
            return ("object", self._number(obj), cls)
        if len(obj) <= PIECE_ITEMS:
            return None
        return (kind, self._number(obj))

    def _number(self, obj: Any) -> int:
        number = self._numbers.get(id(obj))
        if number is None:
            number = self._numbers[id(obj)] = len(self.deferred)
            self.deferred.append(obj)
        return number


@cache  # asked for every object the first pickler meets
def _by_attribute(cls: type) -> bool:
    """Whether this package's objects of ``cls`` come an attribute a piece (the
    matcher: read whole, its lists, patterns and words held the interpreter lock
    for 2-5 ms). Only for the plain case: state in ``__dict__`` (or a dict from
    ``__getstate__``), rebuilt by no ``__setstate__`` or reduce of its own, and
    hashed by identity, so that it can be referred to before its attributes arrive."""
    own = ("__slots__", "__setstate__", "__reduce__", "__reduce_ex__", "__hash__", "__eq__")
    return cls.__module__.startswith("deterrence.") and not any(
        name in vars(base) for base in cls.__mro__[:-1] for name in own
    )


class _Reader(pickle.Unpickler):
    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.containers: list[Any] = []

    def persistent_load(self, pid: Any) -> Any:
        kind, number = pid[:2]
        if number == len(self.containers):  # first met: numbered in the same order
            if kind == "object":
                self.containers.append(pid[2].__new__(pid[2]))
            else:
                self.containers.append({} if kind == "dict" else set())
        return self.containers[number]


def dump_whole(obj: object, file: IO[bytes]) -> None:
    """What ``load`` reads as ``obj``, pickled whole: for an object without big
    dicts, sets or objects of this package to read in pieces. The parsed lists
    are that (a list's terms are one tuple), and ``dump``'s call of
    ``persistent_id`` for each of their objects took 4.5 ms at 5,000 terms
    against 1 ms for this, in the warm process at every reload."""
    pickler = pickle.Pickler(file, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dump(obj)
    pickler.dump(_END)


def dump(obj: object, file: IO[bytes]) -> None:
    writer = _Writer(file)
    writer.dump(obj)
    # The pickler calls persistent_id for every object it meets, memoized or not:
    # through the pieces, that made a dump 4-5 times slower than pickle.dumps of
    # the whole (5,000 terms: 120 against 25 ms). Containers whose items hold no
    # big container themselves go through a plain pickler that continues the
    # first one's memo, so that an object shared with the root is still one
    # object. (A big container deeper inside an item comes whole, not in pieces.)
    plain = pickle.Pickler(file, protocol=pickle.HIGHEST_PROTOCOL)
    plain_memo = False  # whether the plain pickler holds the latest memo
    done = 0
    while done < len(writer.deferred):  # a piece may defer further containers
        container = writer.deferred[done]
        is_object = type(container) not in _KINDS  # its attributes may hold anything
        nested = is_object or _holds_big_containers(container)
        # The memo goes with the pickler that writes (copied when it changes hands).
        if nested and plain_memo:
            writer.memo = plain.memo
        elif not nested and not plain_memo:
            plain.memo = writer.memo
        plain_memo = not nested
        pickler = writer if nested else plain
        if is_object:  # each attribute a piece of its own
            state = cast(dict[str, Any], container.__getstate__() or {})
            for name, value in state.items():
                pickler.dump((done, {name: value}))
        else:  # a dict's piece is a dict: pickled as batches of items, not a tuple each
            items = iter(container.items() if isinstance(container, dict) else container)
            kind = dict if isinstance(container, dict) else list
            for _ in range(0, len(container), PIECE_ITEMS):
                pickler.dump((done, kind(islice(items, PIECE_ITEMS))))
        done += 1
    (plain if plain_memo else writer).dump(_END)


def _holds_big_containers(container: dict[Any, Any] | set[Any]) -> bool:
    """Whether a value of ``container`` is a big container (a set's members and a
    dict's keys are hashable: never a dict or a set)."""
    if not isinstance(container, dict):
        return False
    if not _KINDS.keys() & set(map(type, container.values())):  # in C, item by item
        return False
    return any(type(v) in _KINDS and len(v) > PIECE_ITEMS for v in container.values())


def load(file: IO[bytes], pause: Callable[[], None]) -> Any:
    """The object ``dump`` wrote to ``file``; ``pause()`` runs between pieces."""
    reader = _Reader(file)
    root = reader.load()
    pause()
    while (piece := reader.load()) != _END:
        number, items = piece
        # Between reading a piece and filling it in: a pause that runs a young
        # collection (child_build's) untracks the piece's tuples first, and a
        # dict given only untracked items stays untracked itself, so later
        # collections never walk the matcher's big dicts (5,000 terms: 0.6 ms
        # off every collection of the older generations until a full one).
        # An empty dict updated from a dict copies its table and its tracking
        # with it; item by item, it tracks itself only for a tracked item.
        pause()
        target = reader.containers[number]
        if type(target) is dict:
            target.update(items if target else items.items())
        elif type(target) is set:
            target.update(items)
        else:  # attribute names interned, as pickle's own BUILD does
            vars(target).update((sys.intern(name), value) for name, value in items.items())
    return root


def release(obj: object, pause: Callable[[], None]) -> None:
    """Empty the big dicts and sets of ``obj`` a piece at a time, calling
    ``pause()`` between pieces: freed in one go, a matcher's objects are
    released by one C call that holds the interpreter lock throughout (5,000
    terms: 7 ms). Only for an object that nothing else uses any more: it is
    left empty. Follows the private attributes (a leading underscore) of this
    package's own objects, which nothing outside them should hold, and the
    items of small containers."""
    for container in _big_containers(obj):
        while container:
            for _ in range(min(PIECE_ITEMS, len(container))):
                container.popitem() if isinstance(container, dict) else container.pop()
            pause()


def _big_containers(root: object) -> list[dict[Any, Any] | set[Any]]:
    found: list[dict[Any, Any] | set[Any]] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (dict, set)):
            if len(obj) > PIECE_ITEMS:
                found.append(obj)
            elif isinstance(obj, dict):
                stack.extend(obj.values())
        elif isinstance(obj, (tuple, list)):
            if len(obj) <= PIECE_ITEMS:
                stack.extend(obj)
        elif type(obj).__module__.startswith("deterrence."):
            names = [*getattr(type(obj), "__slots__", ()), *getattr(obj, "__dict__", {})]
            stack.extend(getattr(obj, name) for name in names if name.startswith("_"))
    return found
