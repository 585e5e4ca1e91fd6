"""Where a list file's terms lie (deterrence.list_layout), and the parse of a file
that gained terms on top of its last parse (``ParsedFiles``): it must give exactly
what a parse of the whole file gives, lines and problems included."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deterrence import lists
from deterrence.list_layout import Layout
from deterrence.lists import ListError, ParsedFiles, TermList, load_lists

PLAIN = (
    'id = "soak"\r\n'
    'category = "c"\n'
    'version = "1"\n'
    "terms = [  # invented words\n"
    '  "zorblax",\n'
    "\n"
    "  # a comment, and a table\n"
    '  { term = "quendrific", fuzzy = false },\n'
    '  "mirvel#wort",  # a # in a string\n'
    "]\n"
    "\n"
    "[tests]\n"
    'match = ["zorblax"]\n'
)


def test_a_plain_file_has_its_entries_lines() -> None:
    found = Layout.of(PLAIN)
    assert found is not None
    layout, lines = found
    assert lines == (5, 8, 9)
    assert (layout.first_line, layout.closing_line, layout.open) == (5, 10, True)
    assert layout.body == PLAIN[PLAIN.index('  "zorblax') : PLAIN.index("]\n")]


@pytest.mark.parametrize(
    "text",
    [
        'id = "x"\nterms = ["zorblax"]\n',  # the array on one line
        'id = "x"\nterms = [\n  "zorblax", "mirvelwort",\n]\n',  # two entries on a line
        'id = "x"\nterms = [\n  "zorb\\"lax",\n]\n',  # an escape
        'id = "x"\nterms = [\n  { term = "zorblax",\n  fuzzy = false },\n]\n',  # two lines
        "id = \"x\"\nterms = [\n  'zorblax',\n]\n",  # a literal string
        'name = """\nterms = [\n"""\nterms = [\n  "zorblax",\n]\n',  # a multi-line string
        '[tests]\nterms = [\n  "zorblax",\n]\n',  # not the top-level array
        'id = "x"\nterms = [\n  "zorblax",\n',  # never closed
    ],
)
def test_other_shapes_have_no_layout(text: str) -> None:
    assert Layout.of(text) is None


def test_lines_appended_to_the_array_are_all_that_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "soak.toml"
    path.write_text(PLAIN)
    parsed = ParsedFiles()
    (first,) = parsed.load_lists([path])
    wholes: list[Path] = []
    whole = lists._parse

    def counted(path: Path, raw: bytes, problem_of: lists._ProblemOf) -> object:
        wholes.append(path)
        return whole(path, raw, problem_of)

    monkeypatch.setattr(lists, "_parse", counted)
    edited = PLAIN.replace('"1"', '"2"').replace("]\n", '  "tozzlewick", # new\n]\n', 1)
    path.write_text(edited)
    (second,) = parsed.load_lists([path])
    assert wholes == []  # on top of the last parse
    assert second == load_lists([path])[0] and second.version == "2"
    assert [(t.text, t.line) for t in second.terms][-1] == ("tozzlewick", 10)
    assert second.terms._rows[0] is first.terms._rows[0]  # type: ignore[attr-defined]
    wholes.clear()
    path.write_text(edited.replace('"zorblax",', '"zorblax", # changed'))  # not appended
    (third,) = parsed.load_lists([path])
    assert wholes == [path]
    assert third == load_lists([path])[0]


# --- a parse on top of the last one is a whole parse -----------------------------------

GOOD_WORDS = ["zorblax", "quendrific", "mirvelwort", "tozzlewick", "flarn"]
WORDS = st.sampled_from([*GOOD_WORDS * 8, "x", ""])  # now and then a problem
ENTRIES = st.sampled_from(["string"] * 6 + ["table"] * 2 + ["odd"]).flatmap(
    lambda kind: {
        "string": WORDS.map(lambda word: f'"{word}"'),
        "table": st.tuples(
            WORDS, st.sampled_from(["", ", fuzzy = false", ", substring = true", ", fuzz = 1"])
        ).map(lambda pair: f'{{ term = "{pair[0]}"{pair[1]} }}'),
        # An escape (no layout), or not a string (a problem).
        "odd": st.sampled_from(['"zorb\\u0061lax"', "42"]),
    }[kind]
)
ENTRY_LINES = st.sampled_from(
    ["comma"] * 12 + ["bare", "blank", "comment", "two", "noted"]
).flatmap(
    lambda kind: {
        "comma": ENTRIES.map(lambda entry: f"  {entry},"),
        "bare": ENTRIES.map(lambda entry: f"  {entry}"),  # only the last may go without
        "blank": st.just(""),
        "comment": st.just("  # a comment"),
        "two": st.just('  "zorblax", "flarn",'),  # two on a line: no layout
        "noted": ENTRIES.map(lambda entry: f"  {entry}, # note"),
    }[kind]
)
HEADERS = st.lists(
    st.sampled_from(
        [
            'version = "1"',
            'version = "2"',
            'version = "3"',
            'name = "zorblax"',
            "fuzzy = false",
            "fuzzy = true",
            'action = "warn"',
            'languages = ["en"]',
            'allow = ["report zorblax"]',
            'fuzzy = "yes"',
            'colour = "red"',
        ]
    ),
    max_size=3,
    unique=True,
).flatmap(lambda headers: st.sampled_from([headers] * 5 + [[*headers, None]]))
TAILS = st.sampled_from(
    [
        "",
        "",
        '[tests]\nmatch = ["zorblax"]\n',
        '[[rules]]\nid = "r"\nall_of = [["flarn"]]\n',
        "[tests]\nmatch = 5\n",
    ]
)


def list_file(headers: list[str | None], entries: list[str], tail: str, newline: str = "\n") -> str:
    """A list file; its headers padded to three lines, so that the array mostly
    stays on its line (``None`` in ``headers`` asks for no padding)."""
    padded = [h for h in headers if h is not None]
    if None not in headers:
        padded += ["# -"] * (3 - len(padded))
    lines = ['id = "soak"', 'category = "c"', *padded, "terms = [", *entries, "]"]
    return newline.join(lines) + newline + tail


def outcome(load: object, path: Path) -> TermList | tuple[str, ...]:
    try:
        (term_list,) = load([path])  # type: ignore[operator]
    except ListError as exc:
        return exc.problems
    return term_list


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.lists(ENTRY_LINES, max_size=6),
    edits=st.lists(st.tuples(HEADERS, st.lists(ENTRY_LINES, max_size=3), TAILS), max_size=3),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_a_parse_on_top_of_the_last_one_is_a_whole_parse(
    tmp_path: Path,
    entries: list[str],
    edits: list[tuple[list[str | None], list[str], str]],
    newline: str,
) -> None:
    """Each edit writes the file again with other lines outside the array, and
    lines appended to it; a whole parse says what each load must give."""
    path = tmp_path / "soak.toml"
    parsed = ParsedFiles()
    for headers, appended, tail in [([], [], ""), *edits]:
        entries = entries + appended
        text = list_file(headers, entries, tail, newline)
        path.write_text(text, newline="")
        got = outcome(parsed.load_lists, path)
        assert got == outcome(load_lists, path)
        if isinstance(got, TermList):  # and the layout it keeps is the file's
            found = Layout.of(text)
            assert parsed._parsed[path].layout == (found and found[0])
