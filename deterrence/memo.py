"""A bounded memo for per-word results of the matcher.

Search traffic repeats its words far more than it repeats whole queries, and
the misspelling lookup of one word is the costliest step of matching at large
list sizes. The memo keeps recent words' results in two generations of plain
dicts: a lookup tries the current one, then the previous one (a hit there is
copied forward); when the current one is full it becomes the previous one.
That approximates LRU with no bookkeeping per hit and no iteration, and each
step is one dict operation, so threads sharing a matcher need no lock: a race
can only lose an entry, never return a wrong one.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Value = TypeVar("Value")


class WordMemo(Generic[Value]):
    """Holds the results of up to ``2 * size`` recent words (0 disables it)."""

    __slots__ = ("_current", "_previous", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._current: dict[str, Value] = {}
        self._previous: dict[str, Value] = {}

    def get(self, word: str) -> Value | None:
        value = self._current.get(word)
        if value is None:
            value = self._previous.get(word)
            if value is not None:
                self.put(word, value)
        return value

    def put(self, word: str, value: Value) -> None:
        if not self.size:
            return
        current = self._current
        if len(current) >= self.size:
            self._previous = current
            current = self._current = {}
        current[word] = value

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def __getstate__(self) -> tuple[int]:
        return (self.size,)  # a matcher built in another process arrives with an empty memo

    def __setstate__(self, state: tuple[int]) -> None:
        (self.size,) = state
        self._current = {}
        self._previous = {}
