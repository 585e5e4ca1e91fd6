"""Small in-memory term lists for tests of the parts that only read list
metadata (metrics labels, list status)."""

from __future__ import annotations

from deterrence.lists import Action, Term, TermList


def demo_list(
    list_id: str,
    category: str,
    action: Action,
    terms: tuple[str, ...],
    version: str | None = None,
) -> TermList:
    return TermList(
        id=list_id,
        category=category,
        action=action,
        version=version,
        terms=tuple(Term(text, fuzzy=True) for text in terms),
    )
