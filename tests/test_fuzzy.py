"""The candidate index finds exactly the words a brute-force OSA comparison
finds: no word within its allowance is missed, none beyond it is returned."""

from __future__ import annotations

import random

from rapidfuzz.distance import OSA

from deterrence.fuzzy import FuzzyIndex, allowance, part_shifts

LETTERS = "abdeiklmnorstuvz"


def _perturb(rng: random.Random, word: str, edits: int) -> str:
    for _ in range(edits):
        i = rng.randrange(len(word))
        op = rng.choice("sidt")
        if op == "s":
            word = word[:i] + rng.choice(LETTERS) + word[i + 1 :]
        elif op == "i":
            word = word[:i] + rng.choice(LETTERS) + word[i:]
        elif op == "d" and len(word) > 1:
            word = word[:i] + word[i + 1 :]
        elif op == "t" and i + 1 < len(word):
            word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word


def test_the_index_agrees_with_brute_force() -> None:
    rng = random.Random(20261201)
    words = sorted({"".join(rng.choices(LETTERS, k=rng.randint(5, 14))) for _ in range(3000)})
    index = FuzzyIndex(words, range(len(words)))
    queries = [_perturb(rng, rng.choice(words), rng.randint(0, 3)) for _ in range(3000)]
    queries += ["".join(rng.choices(LETTERS, k=rng.randint(4, 16))) for _ in range(500)]
    for query in queries:
        found: dict[int, int] = {}
        index.candidates(query, found)
        expected = {
            i: OSA.distance(query, word)
            for i, word in enumerate(words)
            if OSA.distance(query, word) <= allowance(len(word))
        }
        assert found == expected, query


def test_parts_move_only_as_far_as_the_length_difference_allows() -> None:
    assert part_shifts(2, 0) == (-1, 0, 1)  # one insertion and one deletion at most
    assert part_shifts(2, 2) == (-2, -1, 0)  # two deletions before the part, or fewer
    assert part_shifts(2, -2) == (0, 1, 2)
    assert part_shifts(2, 1) == (-1, 0)
    assert part_shifts(1, 0) == (0,)
