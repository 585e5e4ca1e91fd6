"""``deterrence lists check|test|lint``: tools for list maintainers."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from deterrence.commands._common import load_or_report
from deterrence.lists import TermList
from deterrence.matcher import Matcher
from deterrence.text import canonicalize

LINT_WORDS = 30000  # how many of each language's most common words lint tries


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("lists", help="check, test and lint term lists")
    commands = parser.add_subparsers(dest="lists_command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate list files; exit 1 with every problem")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    check.set_defaults(handler=run_check)

    test = commands.add_parser("test", help="run every list's [tests]; exit 1 on a failure")
    test.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    test.set_defaults(handler=run_test)

    lint = commands.add_parser(
        "lint", help="show the common words each term would catch through fuzzy or substring"
    )
    lint.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    lint.add_argument(
        "--words", type=int, default=LINT_WORDS, help="common words tried per language"
    )
    lint.add_argument("--strict", action="store_true", help="exit 1 when any term catches words")
    lint.set_defaults(handler=run_lint)


def run_check(args: argparse.Namespace) -> int:
    lists = load_or_report(args.paths)
    if lists is None:
        return 1
    Matcher(lists)  # the index builds too
    for term_list in lists:
        version = f" version {term_list.version}" if term_list.version else ""
        print(
            f"ok  {term_list.id}{version}: {len(term_list.terms)} terms, "
            f"{len(term_list.rules)} rules, action {term_list.action} ({term_list.path})"
        )
    return 0


def run_test(args: argparse.Namespace) -> int:
    lists = load_or_report(args.paths)
    if lists is None:
        return 1
    failures = passed = 0
    for term_list in lists:
        # Each list is tested on its own: another list's match proves nothing.
        matcher = Matcher([term_list])
        for query in term_list.tests_match:
            if matcher.match(query):
                passed += 1
            else:
                failures += 1
                print(f"FAIL {term_list.id}: should match, did not: {query!r}")
        for query in term_list.tests_no_match:
            found = matcher.match(query)
            if found is None:
                passed += 1
            else:
                failures += 1
                what = found.term if found.term is not None else f"rule {found.rule}"
                print(f"FAIL {term_list.id}: should not match, matched {what!r}: {query!r}")
    print(f"{passed} passed, {failures} failed")
    return 1 if failures else 0


def common_words(language: str, count: int) -> list[str]:
    from wordfreq import top_n_list

    return list(top_n_list(language, count))


def lint_list(term_list: TermList, words_per_language: int) -> dict[str, list[str]]:
    """Common words each term catches other than by being the term itself."""
    try:
        import wordfreq  # noqa: F401
    except ModuleNotFoundError:
        raise SystemExit(
            "deterrence lists lint needs wordfreq: pip install 'deterrence[lint]'"
        ) from None
    matcher = Matcher([term_list])
    exact = {canonicalize(term.text) for term in term_list.terms}
    caught: dict[str, list[str]] = defaultdict(list)
    for language in term_list.languages or ("en",):
        try:
            words = common_words(language, words_per_language)
        except LookupError:
            print(f"warning: no word frequencies for language {language!r}", file=sys.stderr)
            continue
        for word in words:
            match = matcher.match(word)
            if match is None or canonicalize(word) in exact:
                continue
            key = match.term if match.term is not None else f"rule {match.rule}"
            if word not in caught[key]:
                caught[key].append(word)
    return caught


def run_lint(args: argparse.Namespace) -> int:
    lists = load_or_report(args.paths)
    if lists is None:
        return 1
    findings = 0
    for term_list in lists:
        caught = lint_list(term_list, args.words)
        kinds = {t.text: "substring" if t.substring else "fuzzy" for t in term_list.terms}
        for term, words in caught.items():
            findings += 1
            shown = ", ".join(words[:12]) + (", …" if len(words) > 12 else "")
            kind = kinds.get(term, "rule")
            print(f"{term_list.id}: `{term}` ({kind}) would catch: {shown}")
    if not findings:
        print("no term catches a common word")
    return 1 if findings and args.strict else 0
