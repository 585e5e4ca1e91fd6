"""The privacy proof (DESIGN §6): canary queries go through every path a query
can take — GET, POST form, multipart, JSON, warn mode, the help redirect, the
demo and the reverse proxy — and then every output is searched for them:
stdout and stderr (with uvicorn's access log), /metrics, the SQLite file, the
report in every format, and every file under the data directories. Neither
the canaries, nor the client address, nor the user agent may appear anywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from live_uvicorn import free_port

CANARY = "qvexcanarium"  # on the test list: matches
INNOCENT_CANARY = "plumbcanarist"  # on no list
WARN_CANARY = "snorvelcanard"  # on a warn list
CLIENT_ADDRESS = "127.0.0.7"  # requests come from here; it must be recorded nowhere
USER_AGENT = "UserAgentCanary/9.9"
FORBIDDEN = ("canar", CLIENT_ADDRESS, "UserAgentCanary")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    data_dir: Path

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=30)
        return output.decode("utf-8", errors="replace")


def write_lists(directory: Path) -> Path:
    directory.mkdir()
    (directory / "privacy.toml").write_text(
        f'id = "privacy-test"\ncategory = "testing"\nterms = ["{CANARY}"]\n'
    )
    (directory / "privacy-warn.toml").write_text(
        f'id = "privacy-warn"\ncategory = "testing"\naction = "warn"\nterms = ["{WARN_CANARY}"]\n'
    )
    return directory


def start(command: list[str], data_dir: Path, port: int) -> Server:
    env = {**os.environ, "DETERRENCE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "deterrence", *command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx2.get(f"{base}/metrics", timeout=1)
            return Server(process, base, data_dir)
        except httpx2.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{command} did not start: {process.communicate()[0]!r}")


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    transport = httpx2.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx2.Client(transport=transport, headers={"user-agent": USER_AGENT}, timeout=10) as http:
        yield http


def send_canaries(http: httpx2.Client, base: str) -> None:
    for word in (CANARY, INNOCENT_CANARY, WARN_CANARY):
        http.get(f"{base}/search", params={"q": f"{word} one"})
        http.get(f"{base}/search?q={word.upper()}+two&q=three")
        http.post(f"{base}/search", data={"q": f"{word} form"})
        http.post(f"{base}/search", files={"q": (None, f"{word} multipart")})
        http.post(f"{base}/search", json={"query": f"{word} json"})
        http.get(
            f"{base}/search", params={"q": f"{word} json"}, headers={"accept": "application/json"}
        )
        http.get(f"{base}/_deterrence/go/stop-it-now-uk", params={"v": word})
        http.get(f"{base}/_deterrence/go/{word}")
        http.get(f"{base}/_deterrence/warning", params={"q": word})


def assert_clean(where: str, text: str) -> None:
    lowered = text.lower()
    for forbidden in FORBIDDEN:
        assert forbidden.lower() not in lowered, f"{forbidden!r} found in {where}"


def files_under(directory: Path) -> Iterator[Path]:
    yield from (p for p in directory.rglob("*") if p.is_file())


def test_no_canary_client_address_or_user_agent_in_any_output(
    tmp_path: Path, client: httpx2.Client
) -> None:
    lists = write_lists(tmp_path / "lists")
    demo_data = tmp_path / "demo-data"
    demo = start(["demo", "--lists", str(lists)], demo_data, free_port())
    proxy_data = tmp_path / "proxy-data"
    proxy = start(
        ["proxy", "--upstream", demo.base, "--lists", str(lists)], proxy_data, free_port()
    )
    outputs: dict[str, str] = {}
    try:
        send_canaries(client, demo.base)
        send_canaries(client, proxy.base)
        blocked = client.get(f"{demo.base}/search", params={"q": CANARY})
        assert "<html" in blocked.text and "Great Expectations" not in blocked.text
        warned = client.get(f"{demo.base}/search", params={"q": WARN_CANARY})
        assert "deterrence-banner" in warned.text
        for name, server in (("demo", demo), ("proxy", proxy)):
            metrics = client.get(f"{server.base}/metrics").text
            assert 'list="privacy-test"' in metrics
            outputs[f"{name} /metrics"] = metrics
        outputs["dashboard"] = client.get(f"{demo.base}/_deterrence/dashboard").text
    finally:
        outputs["proxy stdout+stderr"] = proxy.stop()
        outputs["demo stdout+stderr"] = demo.stop()

    assert 'GET /search?- HTTP/1.1" 200' in outputs["demo stdout+stderr"]  # the log is on
    for data_dir in (demo_data, proxy_data):
        report_args = ["report", "--from", "2000-01-01", "--to", "2100-01-01"]
        for fmt in ("html", "csv", "json"):
            report = subprocess.run(
                [sys.executable, "-m", "deterrence", *report_args, "--format", fmt,
                 "--data-dir", str(data_dir), "--min-count", "1"],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            outputs[f"report {fmt} {data_dir.name}"] = report.stdout + report.stderr
        files = list(files_under(data_dir))
        assert any(p.suffix == ".sqlite3" for p in files), files
        for path in files:
            outputs[str(path)] = path.read_bytes().decode("utf-8", errors="replace")

    assert '"privacy-test"' in outputs[f"report json {demo_data.name}"]
    for where, text in outputs.items():
        assert_clean(where, text)
