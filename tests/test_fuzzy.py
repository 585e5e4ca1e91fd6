"""The candidate index finds exactly the words a brute-force OSA comparison
finds: no word within its allowance is missed, none beyond it is returned."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from rapidfuzz.distance import OSA

from deterrence.fuzzy import FuzzyIndex, allowance, group_shifts

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


def test_the_candidates_among_a_few_words_agree_with_brute_force() -> None:
    # How a grown matcher completes a word's remembered candidates (matcher._Lineage).
    rng = random.Random(20261206)
    words = sorted({"".join(rng.choices(LETTERS, k=rng.randint(5, 14))) for _ in range(500)})
    index = FuzzyIndex(words, range(len(words)))
    few = rng.sample(words, 64)
    queries = [_perturb(rng, rng.choice(few), rng.randint(0, 3)) for _ in range(2000)]
    queries += ["".join(rng.choices(LETTERS, k=rng.randint(1, 16))) for _ in range(500)]
    for query in queries:
        found: dict[int, int] = {}
        index.candidates_among(query, few, found)
        expected = {
            words.index(word): OSA.distance(query, word)
            for word in few
            if OSA.distance(query, word) <= allowance(len(word))
        }
        assert found == expected, query
    assert sum(1 for q in queries if any(OSA.distance(q, w) <= 2 for w in few)) > 1000


def _one_edit(word: str) -> set[str]:
    letters = [*sorted(set(word)), "q"]
    found = {word[:i] + word[i + 1 :] for i in range(len(word))}
    found |= {word[:i] + c + word[i:] for i in range(len(word) + 1) for c in letters}
    found |= {word[:i] + c + word[i + 1 :] for i in range(len(word)) for c in letters}
    found |= {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)}
    return found


def test_every_word_two_edits_from_a_long_term_word_finds_it() -> None:
    # Every edit of every kind at every position, twice over, including two
    # transpositions across neighbouring part boundaries: no random draw can
    # miss a case the pigeonhole argument of the pair scheme has to cover.
    terms = ["abdeiklmn", "abdeiklmno", "abdeiklmnor", "abdeiklmnorst", "abdeiklmnorstuvzab"]
    index = FuzzyIndex(terms, range(len(terms)))
    for term_id, term in enumerate(terms):
        variants = {v for once in _one_edit(term) for v in _one_edit(once)}
        for variant in variants:
            if OSA.distance(variant, term) > 2:
                continue
            found: dict[int, int] = {}
            index.candidates(variant, found)
            assert found.get(term_id) == OSA.distance(variant, term), (term, variant)


def test_parts_move_only_as_far_as_the_length_difference_allows() -> None:
    # One third: one insertion and one deletion at most, or two of one kind.
    assert group_shifts((1,), 3, 2, 0) == ((-1,), (0,), (1,))
    assert group_shifts((1,), 3, 2, 2) == ((-2,), (-1,), (0,))
    assert group_shifts((1,), 3, 2, -2) == ((0,), (1,), (2,))
    assert group_shifts((1,), 3, 2, 1) == ((-1,), (0,))
    assert group_shifts((1,), 3, 1, 0) == ((0,),)
    # Quarters: the first never moves, the last ends the word.
    assert group_shifts((0, 3), 4, 2, 0) == ((0, 0),)
    assert group_shifts((0, 3), 4, 2, 2) == ((0, -2),)
    assert group_shifts((0, 2), 4, 2, 2) == ((0, -2), (0, -1), (0, 0))
    assert group_shifts((1, 3), 4, 2, 1) == ((-1, -1), (0, -1))
    assert group_shifts((1, 3), 4, 2, 0) == ((-1, 0), (0, 0), (1, 0))
    # Neighbouring intact quarters move together: nothing comes between them.
    assert group_shifts((0, 1), 4, 2, 0) == ((0, 0),)
    assert group_shifts((2, 3), 4, 2, 2) == ((-2, -2),)
    assert group_shifts((1, 2), 4, 2, 0) == ((-1, -1), (0, 0), (1, 1))


def test_the_term_reported_on_a_tie_is_the_same_in_every_process(tmp_path: Path) -> None:
    """Two terms one edit from the query: str hashes, which differ from process to
    process, must not decide which one a match reports."""
    terms = ["zorblaxa", "zorblaxe", "quindrelo", "quindrela", "mivostrak", "mivostrek"]
    listing = tmp_path / "ties.txt"
    listing.write_text("\n".join(terms) + "\n", encoding="utf-8")
    queries = ["zorblaxi", "quindreli", "mivostrik"]
    reported = set()
    for seed in range(6):
        done = subprocess.run(
            [sys.executable, "-m", "deterrence", "match", "--json", "--lists", str(listing)],
            input="\n".join(queries) + "\n",
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        assert all(answer["matched"] for answer in answers)
        reported.add(tuple(answer["term"] for answer in answers))
    assert len(reported) == 1, reported
