"""A bounded memo for the matcher's answers about recent queries and words.

Search traffic repeats itself: popular queries come back again and again, and
the long tail shares its words. The memo keeps recent results in two
generations of plain dicts: a lookup tries the current one, then the previous
one (a hit there is copied forward); when the current one is full it becomes
the previous one. That approximates LRU with no bookkeeping per hit and no
iteration, and each step is one dict operation, so threads sharing a matcher
need no lock: a race can only lose an entry, never return a wrong one.

Keys are the text's ``hash()`` (a query's, a word's, or a whole query
string's), never the text: the memo keeps no query in
memory after its request (DESIGN §6). The string hash is keyed per process
(SipHash, 64 bits); two different texts sharing one while both are in the memo
is a chance of about ``entries / 2**64`` per lookup.

A memo can keep its answers packed (a :class:`Packing`): as bytes, not as
the objects they are. A dict of ints and bytes is never tracked by the cycle
collector, while each answer kept as objects (a ``Match``: three of them) is,
as long as the memo keeps it. Under bench.soak's load, those answers were most
of what the collector walked, in the collections that a reload sets off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar, cast

Value = TypeVar("Value")


class Packing(NamedTuple):
    """How a memo keeps its answers as bytes, and gets them back: given as one
    pair, so that no memo keeps answers packed and hands them out so."""

    pack: Callable[[Any], bytes]
    unpack: Callable[[bytes], Any]


DEFAULT_SIZE = 50_000
"""Entries per generation a memo holds unless configured (a few MB)."""


class Unseen:
    """What a memo answers for a text it does not hold, when None is an answer."""


UNSEEN = Unseen()


class Memo(Generic[Value]):
    """Results for up to ``2 * size`` recent texts (``size`` 0 disables it),
    each other than None kept as ``packing.pack(value)`` and answered as
    ``packing.unpack(kept)`` when ``packing`` is given."""

    __slots__ = ("_current", "_pack", "_previous", "_unpack", "size")

    def __init__(self, size: int, packing: Packing | None = None) -> None:
        self.size = size
        self._pack: Callable[[Any], bytes] | None = packing and packing.pack
        self._unpack: Callable[[bytes], Any] | None = packing and packing.unpack
        self._current: dict[int, Any] = {}
        self._previous: dict[int, Any] = {}

    def get(self, text: str | bytes, default: Value) -> Value:
        key = hash(text)
        value = self._current.get(key, default)
        if value is default:
            value = self._previous.get(key, default)
            if value is default:
                return default
            self._put(key, value)
        if self._unpack is not None and value is not None:
            return cast(Value, self._unpack(value))
        return cast(Value, value)

    def put(self, text: str | bytes, value: Value) -> None:
        pack = self._pack
        self._put(hash(text), value if pack is None or value is None else pack(value))

    def _put(self, key: int, value: object) -> None:
        if not self.size:
            return
        current = self._current
        if len(current) >= self.size:
            self._previous = current
            current = self._current = {}
        current[key] = value

    def forget(self, pause: Callable[[], None]) -> None:
        """Drop everything, a generation at a time with ``pause()`` after each: a full
        one (50,000 answers) is freed by one C call in 1-2 ms, four times less CPU
        than emptying it item by item in pieces (deterrence.pieces)."""
        self._previous = {}
        pause()
        self._current = {}
        pause()

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def __getstate__(self) -> tuple[int, Any, Any]:
        # A matcher built in another process arrives with an empty memo (and
        # the hashes of one process mean nothing in another).
        return self.size, self._pack, self._unpack

    def __setstate__(self, state: tuple[int, Any, Any]) -> None:
        self.size, self._pack, self._unpack = state
        self._current = {}
        self._previous = {}
