"""Reloads build the matcher in a child process (deterrence.child_build): a pickled
matcher answers exactly like the one built here, a broken list is still reported by
file and line, a child that cannot build falls back to building here, and stopping
kills a build in progress — no child process outlives its server.

Every term here is invented.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from live_uvicorn import free_port, gunicorn_command, serve
from test_reload import blocked, invented_terms, polling_middleware, wait_for, write_list

from deterrence import Matcher, Settings
from deterrence.child_build import BuildCancelled, BuildUnavailable, ChildBuilder
from deterrence.lists import Appended, ListError, TermList, load_lists
from deterrence.matcher import Match
from deterrence.metrics import Recorder
from deterrence.reload import MatcherHolder

REPO = Path(__file__).resolve().parent.parent
needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")

MIXED_LIST = """\
id = "mixed"
category = "testing"
action = "warn"
terms = [
  "zorblax",
  "quendrific mirvel",
  { term = "tozzlewick", fuzzy = false },
  { term = "flarnish", substring = true },
  "ゾルブラクス",
  "мирвельторп",
  "glamberquinoxet",
]
allow = ["report zorblax"]

[[rules]]
id = "pair"
all_of = [["glimmerdusk", "vornish"], ["archive", "collection"]]
"""


@pytest.fixture(autouse=True)
def package_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's files may be edited while the tests run (they would rightly send
    builds back into this process); the check has a test of its own."""
    monkeypatch.setattr("deterrence.child_build.PROCESS_STARTED", float("inf"))


def variants(term: str, rng: random.Random) -> list[str]:
    """The term as written and a few evasions of it, some past the allowance."""
    letters = list(term)
    edited = letters.copy()
    edited[rng.randrange(len(edited))] = rng.choice("aeiouxz")
    twice = edited.copy()
    twice[rng.randrange(len(twice))] = rng.choice("bdk")
    return [
        term,
        term.upper(),
        f"free {term} videos",
        " ".join(letters),
        term.replace("o", "0").replace("e", "3"),
        "-".join(term.split()),
        term.replace(" ", ""),
        "".join(edited),
        "".join(twice),
        f"report {term}",
        f"super{term}ing",
    ]


def queries(matcher: Matcher, rng: random.Random) -> list[str]:
    found = ["weather tomorrow", "vornish collection", "glimmerdusk archive", "", "!!"]
    for term_list in matcher.lists:
        found += [*term_list.tests_match, *term_list.tests_no_match]
        for term in term_list.terms:
            found += variants(term.text, rng)
    alphabet = "zorblaxquendificmv -.0"
    found += ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 24))) for _ in range(300)]
    return found


def test_a_pickled_matcher_answers_exactly_like_the_original(tmp_path: Path) -> None:
    (tmp_path / "mixed.toml").write_text(MIXED_LIST, encoding="utf-8")
    write_list(tmp_path / "many.toml", "many", invented_terms(500))
    original = Matcher(load_lists([REPO / "keyword_lists", tmp_path]))
    asked = queries(original, random.Random(3))
    answers = [original.match(q) for q in asked]
    # Pickled after use: whatever the matcher remembers must not change an answer.
    copy = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy.lists == original.lists and copy.term_count == original.term_count
    assert sum(isinstance(a, Match) for a in answers) > len(asked) // 4  # not all misses
    for query, answer in zip(asked, answers, strict=True):
        assert copy.match(query) == answer, query


# --- reloads through the child ---------------------------------------------------------


@pytest.fixture
def lists_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "lists"
    directory.mkdir()
    write_list(directory / "alpha.toml", "alpha", ["zorblax"])
    return directory


@pytest.fixture
def holder(lists_dir: Path, tmp_path: Path) -> Iterator[MatcherHolder]:
    holder = MatcherHolder(Settings(lists=[lists_dir], data_dir=tmp_path / "data"))
    yield holder
    holder.builder.close()


def reloads_here(
    holder: MatcherHolder, lists_dir: Path, caplog: pytest.LogCaptureFixture, why: str
) -> None:
    """A reload still succeeds, built in this process, and the log says why."""
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    with caplog.at_level(logging.WARNING, logger="deterrence.reload"):
        assert holder.reload_blocking("test").result == "ok"
    assert holder.matcher.match("mirvelwort") is not None
    assert holder.build_fallbacks == 1
    assert why in caplog.text


def not_here(*args: object) -> Matcher:
    raise AssertionError("built in the serving process")


def test_a_reload_builds_in_a_child_process(
    holder: MatcherHolder, lists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deterrence.reload.build_here", not_here)
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    assert holder.reload_blocking("test").result == "ok"
    assert holder.matcher.match("mirvelwort") is not None
    assert holder.build_fallbacks == 0


def test_a_broken_list_built_in_a_child_names_file_and_line(
    holder: MatcherHolder, lists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deterrence.reload.build_here", not_here)
    broken = lists_dir / "alpha.toml"
    broken.write_text('id = "alpha"\ncategory = "testing"\nterms = [\n  "ok",\n  3,\n]\n')
    result = holder.reload_blocking("test")
    assert result.result == "error" and result.kind == "list_invalid"
    with pytest.raises(ListError) as here:
        load_lists([lists_dir])
    assert result.error == "; ".join(here.value.problems)  # what a build here reports
    assert result.error.startswith(f"{broken}:3:")
    assert holder.matcher.match("zorblax") is not None  # the lists in service stay
    assert holder.build_fallbacks == 0


def test_a_reload_that_adds_terms_grows_the_matcher_and_answers_as_a_build(
    holder: MatcherHolder,
    lists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("deterrence.reload.build_here", not_here)
    mixed = lists_dir / "mixed.toml"
    mixed.write_text(MIXED_LIST, encoding="utf-8")
    assert holder.reload_blocking("a list more: built").result == "ok"
    assert holder.matcher.grown_by is None
    grown_text = MIXED_LIST.replace(
        '  "zorblax",\n',
        '  "zorblax",\n  "mirvelwortex",\n  { term = "skelvatrine", substring = true },\n',
    ).replace('  "glamberquinoxet",\n', '  "glamberquinoxet",\n  "quendrific tozzle",\n')
    mixed.write_text(grown_text, encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="deterrence.reload"):
        assert holder.reload_blocking("three terms added").result == "ok"
    assert holder.matcher.grown_by == 3
    assert "3 added to those in service" in caplog.text
    built = Matcher(load_lists([lists_dir]))
    asked = queries(built, random.Random(4))
    answers = [holder.matcher.match(q) for q in asked]
    assert answers == [built.match(q) for q in asked]
    assert all(
        holder.matcher.match(t) for t in ("mirvelwortex", "xskelvatriney", "quendrific tozzle")
    )
    mixed.write_text(grown_text.replace('  "glamberquinoxet",\n', ""), encoding="utf-8")
    assert holder.reload_blocking("a term removed: built").result == "ok"
    assert holder.matcher.grown_by is None
    assert holder.matcher.match("glamberquinoxet") is None and holder.build_fallbacks == 0


def test_a_reload_that_adds_terms_keeps_the_words_looked_up_and_a_build_forgets_them(
    holder: MatcherHolder, lists_dir: Path
) -> None:
    for query in ("zorblaks", "mirvelwurt news"):
        holder.matcher.match(query)
    words = holder.matcher._word_memo
    assert len(words) >= 3
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    assert holder.reload_blocking("a term added").result == "ok"
    assert holder.matcher.grown_by == 1
    assert holder.matcher._word_memo is words and len(words) >= 3  # kept, not forgotten
    found = holder.matcher.match("mirvelwurt news")  # a word looked up before the term came
    assert found is not None and found.term == "mirvelwort"
    write_list(lists_dir / "alpha.toml", "alpha", ["mirvelwort"])
    assert holder.reload_blocking("a term removed: built").result == "ok"
    assert holder.matcher.grown_by is None
    assert holder.matcher._word_memo is not words and len(words) == 0  # forgotten


def test_a_list_that_gained_terms_comes_from_the_warm_process_as_those_terms(
    holder: MatcherHolder, lists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the parse the server holds, the warm process sends only the terms a
    list gained; without that parse (a new warm process), the list whole."""
    monkeypatch.setattr("deterrence.reload.build_here", not_here)
    received: list[tuple[Any, ...]] = []
    lists_of = ChildBuilder._lists

    def recording(builder: ChildBuilder, changes: Any) -> tuple[TermList, ...]:
        received.append(changes)
        return lists_of(builder, changes)

    monkeypatch.setattr(ChildBuilder, "_lists", recording)
    alpha, terms = lists_dir / "alpha.toml", ["zorblax"]
    for term in ("mirvelwort", "tozzlewick", "quendrific", "glamberquinoxet"):
        if term == "glamberquinoxet":
            holder.builder.close()  # the warm process goes, and its parses with it
            holder.builder.open()
        terms.append(term)
        write_list(alpha, "alpha", terms)
        assert holder.reload_blocking(f"{term} added").result == "ok"
        assert holder.matcher.grown_by == 1
        assert holder.matcher.lists == load_lists([lists_dir])
    sent = [changes[0][2] for changes in received]
    # The first load: the server's lists were read here at start-up, not sent.
    assert isinstance(sent[0], TermList) and isinstance(sent[3], TermList)
    assert [a.rows[0][0] for a in sent[1:3] if isinstance(a, Appended)] == [
        "tozzlewick",
        "quendrific",
    ]
    assert holder.reload_blocking("nothing changed").result == "ok"
    assert received[-1][0][2] is None  # the very parse the server holds
    assert holder.matcher.match("glamberquinoxet") is not None and holder.build_fallbacks == 0


def test_a_reload_that_adds_terms_forks_no_build(holder: MatcherHolder, lists_dir: Path) -> None:
    """The warm process answers a load itself; only a build forks (counted by a
    wrapper around its os.fork)."""
    forks = lists_dir.parent / "forks.log"
    counting = (
        f"import os\n_fork = os.fork\ndef counted():\n"
        f"    with open({str(forks)!r}, 'a') as log: log.write('fork\\n')\n"
        f"    return _fork()\nos.fork = counted\n"
    )
    holder.builder.command[2] = counting + holder.builder.command[2]
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    assert holder.reload_blocking("a term added").result == "ok"
    assert holder.matcher.grown_by == 1 and not forks.exists()
    write_list(lists_dir / "alpha.toml", "alpha", ["mirvelwort"])
    assert holder.reload_blocking("a term removed").result == "ok"
    assert holder.matcher.grown_by is None and forks.read_text() == "fork\n"
    assert holder.matcher.match("zorblax") is None and holder.build_fallbacks == 0


def test_a_reload_built_here_grows_the_matcher_too(
    holder: MatcherHolder, lists_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder.builder.command = ["/nonexistent/python3"]
    reloads_here(holder, lists_dir, caplog, "building the matcher in this process")
    assert holder.matcher.grown_by == 1


@pytest.mark.parametrize(
    "command",
    [
        ["/nonexistent/python3"],  # cannot be started
        ["/bin/sh", "-c", "sleep 60"],  # not a Python interpreter: never run
        [sys.executable, "-c", "print('hello')"],  # answers nonsense
        [sys.executable, "-c", "import sys; sys.exit(3)"],  # dies
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'deterrence-matcher-1\\nx')"],
    ],
)
def test_a_child_that_cannot_build_falls_back_to_building_here(
    holder: MatcherHolder,
    lists_dir: Path,
    command: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder.builder.command = command
    recorder = Recorder(
        holder.settings, lists=holder.matcher.lists, variants=(), locales=(), services=()
    )
    holder.recorder = recorder
    reloads_here(holder, lists_dir, caplog, "building the matcher in this process")
    fallbacks = recorder.registry.get_sample_value(
        "deterrence_errors_total", {"kind": "list_build_fallback"}
    )
    assert fallbacks == 1


@needs_proc
def test_a_child_that_takes_too_long_is_killed() -> None:
    builder = ChildBuilder(timeout=0.3)
    builder.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(BuildUnavailable, match="no answer"):
        builder.build([])
    assert time.monotonic() - started < 10
    assert children() == set()


def children() -> set[int]:
    """This process's live child processes (Linux)."""
    return process_children(os.getpid())


@dataclass(frozen=True)
class Warm:
    """A builder that has built once, and so has its warm process."""

    builder: ChildBuilder
    files: list[Path]
    pid: int
    """The warm process's."""
    others: set[int]
    """This process's children before the builder."""


@pytest.fixture
def warm(lists_dir: Path) -> Iterator[Warm]:
    others = children()
    builder = ChildBuilder()
    files = [lists_dir / "alpha.toml"]
    try:
        builder.build(files)
        (pid,) = children() - others
        yield Warm(builder, files, pid, others)
    finally:
        builder.close()


@needs_proc
def test_builds_fork_from_one_warm_process_that_leaves_when_idle(lists_dir: Path) -> None:
    others = children()
    builder = ChildBuilder()
    files = [lists_dir / "alpha.toml"]
    try:
        assert builder.build(files).match("zorblax") is not None
        warm = children() - others
        assert len(warm) == 1 and process_children(next(iter(warm))) == set()  # no build left
        write_list(files[0], "alpha", ["zorblax", "mirvelwort"])
        assert builder.build(files).match("mirvelwort") is not None
        assert children() - others == warm  # the same warm process forked the second build
        builder.close()
        assert children() == others
        builder.open()
        builder.idle_seconds = 0.5
        assert builder.build(files).match("mirvelwort") is not None
        (idle,) = children() - others
        wait_for(lambda: children() == others, timeout=10)  # it left on its own
        assert builder.build(files).match("zorblax") is not None  # and a new one came
        assert children() - others not in (set(), {idle})
    finally:
        builder.close()
    assert children() == others


@needs_proc
def test_the_warm_process_yields_to_the_server(warm: Warm) -> None:
    """SCHED_IDLE (a server thread that wakes preempts it at once), and nice 19
    wherever that is refused (a seccomp profile may); the server's own stays as it was."""
    allowed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))",
        ],
        check=False,
        stderr=subprocess.DEVNULL,
    )
    expected = os.SCHED_IDLE if allowed.returncode == 0 else os.SCHED_OTHER
    assert os.sched_getscheduler(warm.pid) == expected
    assert os.getpriority(os.PRIO_PROCESS, warm.pid) == 19
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this process's, as it started


@needs_proc
def test_a_builder_dropped_without_closing_takes_its_warm_process_along(lists_dir: Path) -> None:
    others = children()
    builder = ChildBuilder()
    builder.build([lists_dir / "alpha.toml"])
    assert len(children() - others) == 1
    del builder
    gc.collect()
    assert children() == others


@needs_proc
def test_a_warm_process_killed_between_builds_is_replaced(warm: Warm) -> None:
    os.kill(warm.pid, signal.SIGKILL)
    assert warm.builder.build(warm.files).match("zorblax") is not None
    assert len(children() - warm.others) == 1 and children() - warm.others != {warm.pid}


@needs_proc
def test_a_build_child_killed_mid_build_falls_back_and_the_next_build_forks_again(
    holder: MatcherHolder, lists_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(
        holder.settings, lists=holder.matcher.lists, variants=(), locales=(), services=()
    )
    holder.recorder = recorder
    others = children()
    assert holder.reload_blocking("start the warm process").result == "ok"
    (warm,) = children() - others
    write_list(lists_dir / "alpha.toml", "alpha", [*invented_terms(20_000), "mirvelwort"])
    results = []
    reloading = threading.Thread(target=lambda: results.append(holder.reload_blocking("test")))
    with caplog.at_level(logging.WARNING, logger="deterrence.reload"):
        reloading.start()
        wait_for(lambda: len(process_children(warm)) == 1)  # building
        (building,) = process_children(warm)
        os.kill(building, signal.SIGKILL)
        reloading.join(timeout=120)
    assert results[0].result == "ok"  # built here instead
    assert holder.matcher.match("mirvelwort") is not None
    assert "building the matcher in this process" in caplog.text
    assert "status -9" in caplog.text
    fallbacks = recorder.registry.get_sample_value(
        "deterrence_errors_total", {"kind": "list_build_fallback"}
    )
    assert fallbacks == 1
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "quendrific"])
    assert holder.reload_blocking("again").result == "ok"
    assert holder.build_fallbacks == 1  # the warm process forked this one
    assert holder.matcher.match("quendrific") is not None


@needs_proc
def test_stopping_kills_a_build_in_progress(holder: MatcherHolder, lists_dir: Path) -> None:
    holder.builder.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
    before = children()
    results = []
    reloading = threading.Thread(target=lambda: results.append(holder.reload_blocking("test")))
    reloading.start()
    wait_for(lambda: len(children() - before) == 1)
    started = time.monotonic()
    asyncio.run(holder.stop())
    reloading.join(timeout=10)
    assert not reloading.is_alive() and time.monotonic() - started < 5
    assert results[0].result == "unchanged"  # abandoned: no error counted, no fallback build
    assert holder.build_fallbacks == 0 and holder.matcher.match("mirvelwort") is None
    assert children() == before
    with pytest.raises(BuildCancelled):  # stopped: no new child either
        holder.builder.build([])


@needs_proc
def test_servers_started_and_stopped_leave_no_child_process(
    lists_dir: Path, tmp_path: Path
) -> None:
    before = children()
    for round_ in range(4):
        middleware = polling_middleware(lists_dir, tmp_path / "data")
        word = f"mirvelwort{'x' * round_}"
        with serve(middleware) as base:
            write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", word])
            wait_for(lambda: blocked(base, word))  # noqa: B023 - used within the round
            assert middleware.matcher_holder.build_fallbacks == 0
            write_list(lists_dir / "alpha.toml", "alpha", ["zorblax"])
            time.sleep(0.12)  # stop while that reload may still be building
        assert children() == before


@needs_proc
@pytest.mark.slow
def test_gunicorn_workers_each_reload_through_their_own_child(
    lists_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "APP_DATA_DIR": str(tmp_path / "data"),
        "DETERRENCE_LISTS": f'["{lists_dir}"]',
        "DETERRENCE_RELOAD_POLL_SECONDS": "0.1",
        "PYTHONPATH": str(REPO),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        master = subprocess.Popen(
            gunicorn_command("tests.apps.plain:app"),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: master.poll() is None and _answers(base), timeout=30)
        # One worker may answer before the master has forked the other (a busy machine).
        wait_for(lambda: len(process_children(master.pid)) == 2, timeout=30)
        workers = process_children(master.pid)
        assert len(workers) == 2

        def everyone_blocks(word: str) -> bool:
            # New connections, so that both workers answer.
            return all(_blocked_page(base, word) for _ in range(12))

        assert not everyone_blocks("mirvelwort")
        write_list(lists_dir / "alpha.toml", "alpha", ["zorblax", "mirvelwort"])
        wait_for(lambda: everyone_blocks("mirvelwort"), timeout=30)
        (lists_dir / "alpha.toml").write_text("id = [\n")  # the workers log this
        wait_for(lambda: "term list reload failed" in log.read_text(), timeout=30)
        assert everyone_blocks("mirvelwort")
        time.sleep(0.5)
        # Each worker keeps its own warm build process, and no build lingers in it.
        warm = {pid: process_children(pid) for pid in workers}
        assert all(len(children) == 1 for children in warm.values())
        warm_pids = set().union(*warm.values())
        assert all(process_children(pid) == set() for pid in warm_pids)
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=30)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in warm_pids))
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert "building the matcher in this process" not in log.read_text()


def process_children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # a thread that ended since the listing (a worker, a reaper)
    return found


def _answers(base: str) -> bool:
    try:
        return httpx2.get(f"{base}/search", params={"q": "weather"}, timeout=1).status_code == 200
    except httpx2.TransportError:
        return False


def _blocked_page(base: str, query: str) -> bool:
    response = httpx2.get(f"{base}/search", params={"q": query}, timeout=10)
    return response.headers.get("x-robots-tag") is not None  # only the warning page has it


def test_once_the_package_changed_on_disk_the_build_runs_here(
    holder: MatcherHolder,
    lists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child imports the package from disk: after a deploy that has not restarted
    the server, its classes could not fit this process's code."""
    monkeypatch.setattr("deterrence.child_build.PROCESS_STARTED", 0.0)
    reloads_here(holder, lists_dir, caplog, "changed since this process started")
