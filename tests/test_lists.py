"""The list file format (DESIGN §3): loading, validation and errors."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path
from typing import cast

import pytest

from deterrence.lists import (
    Appended,
    ListError,
    ParsedFiles,
    Term,
    TermList,
    Terms,
    load_lists,
)
from deterrence.resources import KEYWORD_LISTS_DIR

GOOD = """
id = "placeholder"
category = "testing"
action = "warn"
name = "Placeholder list"
version = "1"
languages = ["en"]
terms = ["zorblax", { term = "quendrific", fuzzy = false }, { term = "flarn", substring = true }]
allow = ["report zorblax"]

[[rules]]
id = "pair"
all_of = [["glimp"], ["tozzle", "vorn"]]

[tests]
match = ["zorblax"]
no_match = ["report zorblax"]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_toml_list_loads(tmp_path: Path) -> None:
    (term_list,) = load_lists([write(tmp_path, "a.toml", GOOD)])
    assert term_list.id == "placeholder"
    assert term_list.action == "warn"
    assert [t.text for t in term_list.terms] == ["zorblax", "quendrific", "flarn"]
    assert term_list.terms[1].fuzzy is False
    assert term_list.terms[2].substring is True
    assert term_list.rules[0].all_of == (("glimp",), ("tozzle", "vorn"))
    assert term_list.tests_match == ("zorblax",)


def test_a_text_list_takes_its_id_from_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "invented-words.txt", "# comment\nzorblax\n\nquendrific  # note\n")
    (term_list,) = load_lists([path])
    assert (term_list.id, term_list.category, term_list.action) == (
        "invented-words",
        "invented-words",
        "block",
    )
    assert [(t.text, t.line) for t in term_list.terms] == [("zorblax", 2), ("quendrific", 4)]


def test_term_lines_count_toml_newlines_only(tmp_path: Path) -> None:
    """TOML ends a line at LF (or CRLF) only: a term may hold U+2028, which
    str.splitlines() also splits at, and that put every later term a line off."""
    text = 'id = "a"\ncategory = "a"\nterms = [\n  "zorb\u2028lax",\r\n  "quendrific",\n]\n'
    (term_list,) = load_lists([write(tmp_path, "a.toml", text)])
    assert [(t.text, t.line) for t in term_list.terms] == [("zorb\u2028lax", 4), ("quendrific", 5)]


def test_a_directory_loads_every_list_sorted_by_name(tmp_path: Path) -> None:
    write(tmp_path, "b.txt", "zorblax\n")
    write(tmp_path, "a.toml", GOOD)
    write(tmp_path, "notes.md", "ignored")
    assert [lst.id for lst in load_lists([tmp_path])] == ["placeholder", "b"]


def test_the_shipped_lists_load() -> None:
    assert {lst.id for lst in load_lists([KEYWORD_LISTS_DIR])} == {"demo-generic", "demo-warn"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'id = "x"\ncategory = "c"\nterms = ["zorblax"]\ncolour = "red"\n',
            ":4: unknown key(s) colour",
        ),
        ('id = "Bad Id"\ncategory = "c"\nterms = ["zorblax"]\n', ":1: id 'Bad Id' must match"),
        ('category = "c"\nterms = ["zorblax"]\n', "missing required key 'id'"),
        ('id = "x"\ncategory = "c"\naction = "ban"\nterms = ["zorblax"]\n', ":3: action must be"),
        ('id = "x"\ncategory = "c"\n', "needs at least one term or rule"),
        ('id = "x"\ncategory = "c"\nterms = [""]\n', "empty term"),
        ('id = "x"\ncategory = "c"\nterms = ["z!"]\n', "fewer than 2 characters"),
        (
            'id = "x"\ncategory = "c"\nterms = [{ term = "zorblax", fuzz = true }]\n',
            "unknown key(s) fuzz",
        ),
        ('id = "x"\ncategory = "c"\nterms = [\n', "invalid TOML"),
        (
            'id = "x"\ncategory = "c"\nterms = ["zorblax"]\n[tests]\nno_match = 5\n',
            ":5: [tests] no_match must be a list of strings",
        ),
        (
            'id = "x"\ncategory = "c"\nterms = ["zorblax"]\n[[rules]]\nid = "r"\nall_of = []\n',
            "all_of must be",
        ),
    ],
)
def test_each_kind_of_broken_list_names_the_file_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "broken.toml", text)
    with pytest.raises(ListError) as error:
        load_lists([path])
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"zorblax\nquen\xffdrific\n")
    with pytest.raises(ListError, match=r"bad.txt:2: not valid UTF-8"):
        load_lists([path])


def test_duplicate_ids_fail_and_loading_never_half_succeeds(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD)
    write(tmp_path, "b.toml", GOOD)
    write(tmp_path, "c.txt", "zorblax\n")
    with pytest.raises(ListError, match="duplicate list id 'placeholder'"):
        load_lists([tmp_path])


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'id = "x"\ncategory = "c"\naction = "ban"\nterms = [""]\n')
    write(tmp_path, "b.txt", "z\n")
    with pytest.raises(ListError) as error:
        load_lists([tmp_path])
    assert len(error.value.problems) == 3


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ListError, match="no such file"):
        load_lists([tmp_path / "nope.toml"])


def test_a_lists_terms_are_not_objects_for_the_cycle_collector() -> None:
    # A reload sets off full collections, which walk every tracked object: a
    # list of many terms must not add one per term (each Term is a tuple
    # subclass, which CPython keeps tracked; exact tuples it untracks).
    gc.collect()
    before = len(gc.get_objects())
    term_list = TermList(
        id="invented", category="testing", terms=[Term(f"zorblax{i}", True) for i in range(2000)]
    )
    gc.collect()
    assert len(gc.get_objects()) - before < 20
    assert len(term_list.terms) == 2000
    assert term_list.terms[5] == Term("zorblax5", True)
    assert list(term_list.terms)[-1].text == "zorblax1999"
    assert term_list.terms == tuple(Term(f"zorblax{i}", True) for i in range(2000))
    assert pickle.loads(pickle.dumps(term_list)) == term_list


def test_parsed_files_parse_again_only_what_changed(tmp_path: Path) -> None:
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("zorblax\n")
    two.write_text("quendrific\n")
    parsed = ParsedFiles()
    first = parsed.load_lists([tmp_path])
    assert first == load_lists([tmp_path])
    two.write_text("quendrific\nmirvelwort\n")
    one.touch()  # a new mtime, the same content
    second = parsed.load_lists([tmp_path])
    assert second[0] is first[0]  # kept
    assert second[1] is not first[1] and [t.text for t in second[1].terms] == [
        "quendrific",
        "mirvelwort",
    ]
    two.write_text("quendrific\n#only a comment\nx\n")  # broken: as load_lists says
    with pytest.raises(ListError) as broken:
        parsed.load_lists([tmp_path])
    assert broken.value.problems == (f"{two}:3: term 'x' canonicalizes to fewer than 2 characters",)
    two.write_text("quendrific\nmirvelwort\n")
    assert parsed.load_lists([tmp_path]) == second
    assert parsed.load_lists([one])[0] is first[0]
    assert list(parsed._parsed) == [one]  # the files it did not load are forgotten


def test_parsed_files_send_a_list_as_it_differs_from_the_parse_held(tmp_path: Path) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.txt"
    one.write_text('id = "one"\ncategory = "x"\nversion = "1"\nterms = [\n  "zorblax",\n]\n')
    two.write_text("quendrific\n")
    parsed = ParsedFiles()
    first = parsed.load_changes([tmp_path], {})  # the receiver holds nothing: all whole
    assert [type(sent) for _, _, sent in first] == [TermList, TermList]
    held = {path: digest for path, digest, _ in first}
    lists = {path: sent for path, _, sent in first}
    one.write_text(
        'id = "one"\ncategory = "x"\nversion = "2"\nterms = [\n  "zorblax",\n  "mirvelwort",\n]\n'
    )
    second = parsed.load_changes([tmp_path], held)
    (path_one, digest_one, appended), (path_two, digest_two, same) = second
    assert same is None and digest_two == held[path_two]  # unchanged: the parse held
    assert isinstance(appended, Appended) and digest_one != held[path_one]
    assert appended.rows == (("mirvelwort", True, False, 6),)
    rebuilt = appended.onto(cast(TermList, lists[path_one]))
    assert rebuilt == load_lists([one])[0] and rebuilt.version == "2"
    assert rebuilt.terms._rows[0] is cast(Terms, cast(TermList, lists[path_one]).terms)._rows[0]
    # Held against a parse this no longer has, or a term gone: the list whole.
    one.write_text('id = "one"\ncategory = "x"\nterms = [\n  "mirvelwort",\n]\n')
    third = parsed.load_changes([tmp_path], held)
    assert isinstance(third[0][2], TermList) and third[0][2] == load_lists([one])[0]
    assert parsed.load_changes([tmp_path], {path_one: third[0][1]})[0][2] is None
    shrunk = parsed.load_changes([one], {path_one: digest_one})
    assert isinstance(shrunk[0][2], TermList)  # no longer the file's parse before this one


def test_terms_beyond_older_ones_are_the_added_ones_or_none() -> None:
    older = Terms([Term("zorblax", True, line=1), Term("quendrific", True, line=2)])
    appended = Terms([*older, Term("mirvelwort", True, line=3)])
    assert appended.beyond(older) == [Term("mirvelwort", True, line=3)]
    inserted = Terms(
        [Term("mirvelwort", True, line=1), Term("zorblax", True, line=2), Term("quendrific", True)]
    )
    assert inserted.beyond(older) == [Term("mirvelwort", True, line=1)]  # lines do not count
    assert older.beyond(older) == []
    assert Terms([Term("zorblax", True)]).beyond(older) is None  # one gone
    changed = Terms([Term("zorblax", False), Term("quendrific", True), Term("mirvelwort", True)])
    assert changed.beyond(older) is None
    twice = Terms([*older, Term("zorblax", True)])
    assert twice.beyond(older) == [Term("zorblax", True)]
    assert older.beyond(twice) is None


def test_terms_that_append_to_older_ones_keep_the_older_rows() -> None:
    # A reload's freshly read rows die young instead of each being walked by the
    # cycle collector (gc.collect() untracked the older ones, as a long-lived
    # process's collections do).
    older = Terms([Term("zorblax", True, line=1), Term("quendrific", False, line=2)])
    gc.collect()
    appended = Terms([Term("zorblax", True, line=1), Term("quendrific", False, line=2)])
    appended = Terms([*appended, Term("mirvelwort", True, line=3)])
    assert appended.beyond(older) == [Term("mirvelwort", True, line=3)]
    assert all(new is old for new, old in zip(appended._rows, older._rows, strict=False))
    assert list(appended) == [*older, Term("mirvelwort", True, line=3)]
    assert not any(gc.is_tracked(row) for row in appended._rows[:2])
    inserted = Terms([Term("mirvelwort", True), *older])
    assert inserted.beyond(older) == [Term("mirvelwort", True)]
    assert inserted._rows[1] is not older._rows[0]  # kept only when appended
