"""The Recorder's Prometheus metrics: names, label sets, exposition, multiprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from live_uvicorn import free_port, gunicorn_command, serve
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route
from term_lists import demo_list

from deterrence.metrics import ERROR_KINDS, MATCH_DURATION_BUCKETS, Recorder
from deterrence.settings import Settings

REPO = Path(__file__).resolve().parent.parent


LISTS = [
    demo_list("demo-zorblax", "generic", "block", ("zorblax", "quendrific")),
    demo_list("demo-mirvel", "watch", "count", ("mirveltok",)),
]


def make_recorder(tmp_path: Path, **overrides: object) -> Recorder:
    settings = Settings(
        data_dir=tmp_path,
        search_paths=["/search", "/api/*/search"],
        **overrides,  # type: ignore[arg-type]
    )
    return Recorder(
        settings,
        lists=LISTS,
        variants=["control", "harm"],
        locales=["en", "de"],
        services=["helpline", "chat"],
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


def exposition(recorder: Recorder) -> str:
    body, _ = recorder.exposition()
    return body.decode()


def test_every_configured_label_set_starts_at_zero(tmp_path: Path) -> None:
    text = exposition(make_recorder(tmp_path))
    found = samples(text)
    for route in ("/search", "/api/*/search"):
        assert value(text, "deterrence_requests_inspected_total", route=route) == 0
    for variant in ("control", "harm"):
        for locale in ("en", "de"):
            assert value(text, "deterrence_page_views_total", variant=variant, locale=locale) == 0
        for service in ("helpline", "chat"):
            clicks = value(text, "deterrence_help_clicks_total", service=service, variant=variant)
            assert clicks == 0
        assert (
            value(
                text,
                "deterrence_interventions_total",
                list="demo-zorblax",
                category="generic",
                action="block",
                variant=variant,
            )
            == 0
        )
    # A count-only list shows no message: its interventions carry variant "none".
    assert (
        value(
            text,
            "deterrence_interventions_total",
            list="demo-mirvel",
            category="watch",
            action="count",
            variant="none",
        )
        == 0
    )
    for kind in ERROR_KINDS:
        assert value(text, "deterrence_errors_total", kind=kind) == 0
    for result in ("ok", "error"):
        assert value(text, "deterrence_list_reloads_total", result=result) == 0
    assert value(text, "deterrence_list_terms", list="demo-zorblax") == 2
    assert value(text, "deterrence_list_terms", list="demo-mirvel") == 1
    assert value(text, "deterrence_match_duration_seconds_count") == 0
    # Nothing outside the configuration exists before it is used.
    assert not any("other" in dict(labels).values() for _, labels in found)


def test_the_metric_names_and_labels_of_the_contract(tmp_path: Path) -> None:
    families = {
        f.name: f for f in text_string_to_metric_families(exposition(make_recorder(tmp_path)))
    }
    expected = {
        "deterrence_requests_inspected": ("counter", {"route"}),
        "deterrence_interventions": ("counter", {"list", "category", "action", "variant"}),
        "deterrence_page_views": ("counter", {"variant", "locale"}),
        "deterrence_help_clicks": ("counter", {"service", "variant"}),
        "deterrence_match_duration_seconds": ("histogram", set()),
        "deterrence_list_terms": ("gauge", {"list"}),
        "deterrence_list_reloads": ("counter", {"result"}),
        "deterrence_errors": ("counter", {"kind"}),
    }
    assert set(families) == set(expected)
    for name, (kind, labels) in expected.items():
        assert families[name].type == kind
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, sample


def test_unconfigured_values_are_recorded_as_other(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    recorder.inspected("/search?q=quendrific")
    recorder.intervention(list_id="unknown-list", category="generic", action="block", variant="x")
    recorder.page_view(variant="harm", locale="tlh")
    recorder.help_click(service="https://elsewhere.example/", variant="harm")
    recorder.error("something new")
    text = exposition(recorder)
    assert value(text, "deterrence_requests_inspected_total", route="other") == 1
    assert (
        value(
            text,
            "deterrence_interventions_total",
            list="other",
            category="generic",
            action="block",
            variant="other",
        )
        == 1
    )
    assert value(text, "deterrence_page_views_total", variant="harm", locale="other") == 1
    assert value(text, "deterrence_help_clicks_total", service="other", variant="harm") == 1
    assert value(text, "deterrence_errors_total", kind="other") == 1
    assert "quendrific" not in text
    assert "elsewhere" not in text


def test_counting_and_the_histogram(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    for _ in range(3):
        recorder.inspected("/search")
    recorder.intervention(
        list_id="demo-zorblax", category="generic", action="block", variant="harm"
    )
    recorder.observe_match(0.00003)
    recorder.observe_match(0.002)
    text = exposition(recorder)
    assert value(text, "deterrence_requests_inspected_total", route="/search") == 3
    assert value(text, "deterrence_match_duration_seconds_count") == 2
    assert value(text, "deterrence_match_duration_seconds_bucket", le="5e-05") == 1
    assert value(text, "deterrence_match_duration_seconds_bucket", le="0.0025") == 2
    assert MATCH_DURATION_BUCKETS[0] == 0.00001


def test_a_reload_brings_in_new_lists(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    recorder.list_reload("error", error="keyword_lists/new.toml:1: bad id")
    new = demo_list("demo-fresh", "generic", "warn", ("zorblax", "mirveltok", "quendrific"))
    recorder.list_reload("ok", lists=[LISTS[0], new])
    recorder.intervention(list_id="demo-fresh", category="generic", action="warn", variant="harm")
    text = exposition(recorder)
    assert value(text, "deterrence_list_reloads_total", result="error") == 1
    assert value(text, "deterrence_list_reloads_total", result="ok") == 1
    assert value(text, "deterrence_list_terms", list="demo-fresh") == 3
    assert ("deterrence_list_terms", frozenset({("list", "demo-mirvel")})) not in samples(text)
    assert (
        value(
            text,
            "deterrence_interventions_total",
            list="demo-fresh",
            category="generic",
            action="warn",
            variant="harm",
        )
        == 1
    )
    assert (
        value(
            text,
            "deterrence_interventions_total",
            list="demo-fresh",
            category="generic",
            action="warn",
            variant="control",
        )
        == 0
    )


def test_recorders_do_not_share_a_registry(tmp_path: Path) -> None:
    first = make_recorder(tmp_path / "a")
    second = make_recorder(tmp_path / "b")
    first.inspected("/search")
    assert value(exposition(first), "deterrence_requests_inspected_total", route="/search") == 1
    assert value(exposition(second), "deterrence_requests_inspected_total", route="/search") == 0


def test_metrics_app_served_by_uvicorn(tmp_path: Path) -> None:
    recorder = make_recorder(tmp_path)
    recorder.inspected("/search")
    app = Starlette(routes=[Route("/metrics", recorder.metrics_app)])
    with serve(app) as url:
        response = httpx2.get(f"{url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(response.text, "deterrence_requests_inspected_total", route="/search") == 1

        openmetrics = httpx2.get(
            f"{url}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.rstrip().endswith("# EOF")

        head = httpx2.head(f"{url}/metrics")
        assert head.status_code == 200 and head.content == b""
        refused = httpx2.post(f"{url}/metrics")
        assert refused.status_code == 405
        for answer in (response, openmetrics, head, refused):  # DESIGN §6, every answer
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["x-robots-tag"].startswith("noindex")
            assert answer.headers["cache-control"] == "no-store"


def test_metrics_on_a_separate_loopback_port(tmp_path: Path) -> None:
    port = free_port()
    recorder = make_recorder(tmp_path, metrics_port=port)

    async def scenario() -> None:
        await recorder.start()
        try:
            recorder.page_view(variant="control", locale="de")
            response = await asyncio.to_thread(httpx2.get, f"http://127.0.0.1:{port}/metrics")
            assert (
                value(response.text, "deterrence_page_views_total", variant="control", locale="de")
                == 1
            )
            # DESIGN §6 on this port's answers too, as on the app's /metrics.
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-robots-tag"].startswith("noindex")
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["content-type"].startswith("text/plain")
            assert recorder._http_server is not None
            assert recorder._http_server.server_address[0] == "127.0.0.1"
        finally:
            await recorder.stop()

    asyncio.run(scenario())
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


# --- multiprocess: real gunicorn, two uvicorn workers -----------------------------

WORKER_APP = """
import os
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from deterrence.lists import Term, TermList
from deterrence.metrics import Recorder
from deterrence.settings import Settings


recorder = Recorder(
    Settings(data_dir=Path(os.environ["TEST_DATA_DIR"]), flush_interval_seconds=0.5),
    lists=[
        TermList("demo-zorblax", "generic", terms=(Term("zorblax", True), Term("quendrific", True)))
    ],
    variants=["control", "harm"],
    locales=["en"],
    services=["helpline"],
)


async def search(request):
    recorder.inspected("/search")
    recorder.intervention(
        list_id="demo-zorblax", category="generic", action="block", variant="harm"
    )
    return PlainTextResponse(str(os.getpid()))


@asynccontextmanager
async def lifespan(app):
    await recorder.start()
    yield
    await recorder.stop()


app = Starlette(
    routes=[Route("/search", search), Route("/metrics", recorder.metrics_app)],
    lifespan=lifespan,
)
"""


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path, Path, str]]:
    (tmp_path / "worker_app.py").write_text(textwrap.dedent(WORKER_APP))
    multiproc_dir = tmp_path / "multiproc"
    data_dir = tmp_path / "data"
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "DETERRENCE_METRICS_PORT": str(metrics_port),  # the master serves it
        "TEST_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        gunicorn_command("worker_app:app", "--chdir", str(tmp_path)),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{url}/metrics", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start:\n" + (tmp_path / "gunicorn.log").read_text())
            time.sleep(0.1)
        yield url, process, multiproc_dir, data_dir, f"http://127.0.0.1:{metrics_port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        log.close()


def scrape(url: str) -> str:
    return httpx2.get(f"{url}/metrics", timeout=5).text


def worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


@pytest.mark.slow
def test_counts_add_up_across_gunicorn_workers(
    gunicorn: tuple[str, subprocess.Popen[bytes], Path, Path, str],
) -> None:
    from deterrence.store import Store

    url, process, multiproc_dir, data_dir, metrics_url = gunicorn
    requests = 200

    def search(_: int) -> int:
        # A new connection each time, so the kernel spreads them over both workers.
        return int(httpx2.get(f"{url}/search", params={"q": "zorblax"}, timeout=10).text)

    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = set(pool.map(search, range(requests)))
    assert len(pids) == 2, f"both workers should have served requests, saw {pids}"

    for _ in range(4):  # whichever worker answers the scrape reports the sum
        text = scrape(url)
        assert value(text, "deterrence_requests_inspected_total", route="/search") == requests
        assert (
            value(
                text,
                "deterrence_interventions_total",
                list="demo-zorblax",
                category="generic",
                action="block",
                variant="harm",
            )
            == requests
        )
        assert value(text, "deterrence_page_views_total", variant="control", locale="en") == 0
        assert value(text, "deterrence_list_terms", list="demo-zorblax") == 2
    # The master's metrics port (deploy/gunicorn.conf.py) serves the same sum, with
    # DESIGN §6's headers.
    response = httpx2.get(f"{metrics_url}/metrics", timeout=5)
    assert value(response.text, "deterrence_requests_inspected_total", route="/search") == requests
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-robots-tag"].startswith("noindex")

    # A worker dies and is replaced: its counts stay, its live gauge goes
    # (child_exit -> mark_process_dead in deploy/gunicorn.conf.py).
    victim = next(iter(worker_pids(process.pid)))
    os.kill(victim, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while victim in worker_pids(process.pid) or len(worker_pids(process.pid)) < 2:
        assert time.monotonic() < deadline, "gunicorn did not replace the worker"
        time.sleep(0.1)
    assert not list(multiproc_dir.glob(f"gauge_livemostrecent_{victim}.db"))
    text = scrape(url)
    assert value(text, "deterrence_requests_inspected_total", route="/search") == requests
    assert value(text, "deterrence_list_terms", list="demo-zorblax") == 2

    # Every worker flushes to the shared SQLite buckets at shutdown.
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    rows = Store(data_dir).counts("deterrence_requests_inspected_total")
    assert sum(row.value for row in rows) == requests
