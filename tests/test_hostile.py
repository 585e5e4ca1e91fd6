"""The hostile case file (tests/hostile/cases.toml) against real servers: the demo
under uvicorn, and ``deterrence proxy`` in front of the demo's search site without
deterrence (so a warning can only come from the proxy). Every case must get its
expected answer, leave the server answering, and leak its canary nowhere — not in a
response header, a warning page, or any line deterrence logged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_uvicorn import metric

from deterrence import hostile

CASES = Path(__file__).parent / "hostile" / "cases.toml"
BLOCK_STATUS = 451


@pytest.fixture(scope="module")
def case_file() -> hostile.CaseFile:
    return hostile.load_cases(CASES)


# The demo's search site alone, without deterrence: a warning must come from the proxy.
BARE_SITE = ["--factory", "deterrence.demo:create_site", "--no-access-log"]


@pytest.fixture(params=["demo", "proxy"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, list[hostile.Server]]]:
    """The base URL, and the deterrence servers (whose logs must hold no secret)."""
    env = {"DETERRENCE_BLOCK_STATUS": str(BLOCK_STATUS), "DETERRENCE_DATA_DIR": str(tmp_path)}
    if request.param == "demo":
        with hostile.serve(["demo"], env=env) as demo:
            yield demo.base_url, [demo]
        return
    with (
        hostile.serve(BARE_SITE, module="uvicorn") as site,
        hostile.serve(["proxy", "--upstream", site.base_url], env=env) as proxy,
    ):
        yield proxy.base_url, [proxy]
        assert site.alive()
        assert b"Traceback" not in site.output()


def test_every_hostile_case(
    case_file: hostile.CaseFile, target: tuple[str, list[hostile.Server]]
) -> None:
    base_url, servers = target
    canary = hostile.new_canary()
    results = hostile.run_cases(case_file, base_url, block_status=BLOCK_STATUS, canary=canary)
    failures = {r.case.id: (r.statuses, r.problems) for r in results if not r.ok}
    assert failures == {}
    assert all(server.alive() for server in servers)
    # The documented fail modes were counted; nothing raised.
    assert metric(base_url, "deterrence_errors_total", kind="query_too_long") >= 6
    assert metric(base_url, "deterrence_errors_total", kind="body_too_large") == 5
    assert metric(base_url, "deterrence_errors_total", kind="match_exception") == 0
    assert metric(base_url, "deterrence_errors_total", kind="decode") == 0
    # Stop the servers, then search everything they logged.
    for server in servers:
        server.process.terminate()
        server.process.wait(timeout=30)
        assert server._reader is not None
        server._reader.join(timeout=10)
    for server in servers:
        log = server.output()
        assert b"Traceback" not in log
        assert hostile.leaked([canary, *case_file.secrets], log) == []
        assert len(log.splitlines()) > len(results)  # the access log was on


def test_case_files_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "cases.toml"
    bad.write_text('[[case]]\nid = "x"\npath = "/"\nexpect = { outcome = "maybe" }\n')
    with pytest.raises(hostile.CaseError, match="case 'x': outcome must be one of"):
        hostile.load_cases(bad)
    bad.write_text('[[case]]\nid = "x"\npieces = 500\n')
    with pytest.raises(hostile.CaseError, match="pieces must be"):
        hostile.load_cases(bad)
    bad.write_text('[[case]]\nid = "x"\nraw = "GET / HTTP/1.1"\nmethod = "POST"\n')
    with pytest.raises(hostile.CaseError, match="'raw' replaces"):
        hostile.load_cases(bad)


def test_a_case_that_fails_is_reported(tmp_path: Path) -> None:
    """The runner is not a rubber stamp: a wrong expectation, a leak in a header and a
    wedged server each fail."""
    cases = tmp_path / "cases.toml"
    cases.write_text(
        '[[case]]\nid = "expects-too-much"\npath = "/search?q=dickens+{canary}"\n'
        'expect = { outcome = "blocked" }\n'
    )
    case_file = hostile.load_cases(cases)
    env = {"DETERRENCE_BLOCK_STATUS": str(BLOCK_STATUS), "DETERRENCE_DATA_DIR": str(tmp_path)}
    with hostile.serve(["demo"], env=env) as demo:
        (result,) = hostile.run_cases(case_file, demo.base_url, block_status=BLOCK_STATUS)
    assert result.problems == ["expected the warning page, got 200"]
    assert hostile.leaked(["cnryabc"], b"x: 1\nlocation: /?q=CNRYABC") == ["cnryabc"]
