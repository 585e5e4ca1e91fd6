"""Hostile requests from a case file, sent over a raw socket (in the manner of
go-ftw): malformed encodings, odd bytes, huge and slow bodies, pipelining …

Each case says what to send and what must come back: the status class, whether the
answer is the warning page (``blocked``), a refusal of a search too long to inspect
(``rejected``: 413 or 414) or neither (``passed``), and — for every case — that
nothing leaks. A *canary* word, fresh for each run, rides along in the cases'
queries (``{canary}``); it must appear in no response header, no warning page and no
line the server logs. After every case a follow-up request must still be answered: a
case that crashes or wedges the server fails.

The format is described in docs/hostile-cases.md; the shipped cases are
tests/hostile/cases.toml. Run them::

    python -m deterrence.hostile --serve                 # against the demo it starts
    python -m deterrence.hostile --url http://127.0.0.1:8000 --block-status 451

With ``--serve`` the demo runs with ``DETERRENCE_BLOCK_STATUS=451`` so a warning page
is told apart from results by its status; against your own server pass the status it
blocks with (set ``DETERRENCE_BLOCK_STATUS`` to something distinctive for the run) and
``--log FILE`` to have its log searched for the canary too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_from_bytes, urlsplit

import tomli

Outcome = Literal["blocked", "rejected", "passed", "any"]
OUTCOMES = ("blocked", "rejected", "passed", "any")
REJECTED_STATUSES = (413, 414)
"""How deterrence refuses a search too long to inspect (``on_oversize = "reject"``)."""
DEFAULT_CASES = Path(__file__).resolve().parent.parent / "tests" / "hostile" / "cases.toml"
MAX_PIECES = 50
MAX_DELAY = 2.0
"""Slow cases are bounded: at most MAX_PIECES writes, at most MAX_DELAY seconds apart."""
MAX_REPEAT = 10_000_000
DEFAULT_FOLLOWUP = "/search?q=dickens"
SOCKET_TIMEOUT = 15.0

_CASE_KEYS = {"id", "title", "raw", "requests", "pieces", "delay", "expect", "secrets"}
_REQUEST_KEYS = {"method", "path", "version", "headers", "body", "chunked"}
_EXPECT_KEYS = {"status", "outcome"}


class CaseError(ValueError):
    """A case file is invalid; the message names the file and case."""


# --- the case file ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expect:
    status: str = "any"
    """``any``, a class (``2xx``, ``4xx``) or an exact code (``451``)."""
    outcome: Outcome = "any"

    def check(self, status: int, blocked: bool) -> str | None:
        if self.outcome == "blocked" and not blocked:
            return f"expected the warning page, got {status}"
        if self.outcome == "rejected" and (blocked or status not in REJECTED_STATUSES):
            return f"expected the search rejected with 413 or 414, got {status}"
        if self.outcome == "passed" and blocked:
            return "expected no warning page, got one"
        wanted = self.status.lower()
        if wanted == "any" or wanted == str(status):
            return None
        if len(wanted) == 3 and wanted.endswith("xx") and wanted[0] == str(status)[0]:
            return None
        return f"expected status {self.status}, got {status}"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    wire: Callable[[str, str], bytes]
    """Given host and canary, the bytes of this request."""


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    title: str
    requests: tuple[Request, ...]
    expects: tuple[Expect, ...]
    pieces: int = 1
    delay: float = 0.0
    secrets: tuple[str, ...] = ()

    def wire(self, host: str, canary: str) -> bytes:
        return b"".join(r.wire(host, canary) for r in self.requests)


@dataclass(frozen=True, slots=True)
class CaseFile:
    cases: tuple[Case, ...]
    secrets: tuple[str, ...] = ()
    """Strings (besides the canary) that no log line, header or warning page may hold."""
    followup: str = DEFAULT_FOLLOWUP
    """Requested after every case: must be answered 2xx and not blocked."""


def load_cases(path: Path) -> CaseFile:
    try:
        data = tomli.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomli.TOMLDecodeError) as exc:
        raise CaseError(f"{path}: {exc}") from exc
    unknown = set(data) - {"case", "secrets", "followup"}
    if unknown:
        raise CaseError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    cases = []
    seen: set[str] = set()
    for index, raw in enumerate(data.get("case", []), start=1):
        where = f"{path}: case {raw.get('id', index)!r}"
        try:
            case = _parse_case(raw)
        except KeyError as exc:
            raise CaseError(f"{where}: missing key {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise CaseError(f"{where}: {exc}") from exc
        if case.id in seen:
            raise CaseError(f"{where}: duplicate id")
        seen.add(case.id)
        cases.append(case)
    return CaseFile(
        tuple(cases),
        tuple(str(s) for s in data.get("secrets", [])),
        str(data.get("followup", DEFAULT_FOLLOWUP)),
    )


def _parse_case(raw: dict[str, Any]) -> Case:
    unknown = set(raw) - _CASE_KEYS - _REQUEST_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    case_id = str(raw["id"])
    if "raw" in raw:
        if set(raw) & (_REQUEST_KEYS | {"requests"}):
            raise ValueError("'raw' replaces method, path, headers, body and requests")
        wire = _parts(raw["raw"])
        method = _raw_method(raw["raw"])
        requests: tuple[Request, ...] = (Request(method, wire),)
    elif "requests" in raw:
        if set(raw) & _REQUEST_KEYS:
            raise ValueError("'requests' replaces method, path, headers and body")
        requests = tuple(_parse_request(r) for r in raw["requests"])
    else:
        requests = (_parse_request({k: v for k, v in raw.items() if k in _REQUEST_KEYS}),)
    expect = raw.get("expect", {})
    expects = tuple(_parse_expect(e) for e in (expect if isinstance(expect, list) else [expect]))
    if len(expects) != len(requests):
        raise ValueError(f"{len(requests)} request(s) but {len(expects)} expect table(s)")
    pieces = int(raw.get("pieces", 1))
    delay = float(raw.get("delay", 0.0))
    if not 1 <= pieces <= MAX_PIECES or not 0 <= delay <= MAX_DELAY:
        raise ValueError(f"pieces must be 1..{MAX_PIECES} and delay 0..{MAX_DELAY} seconds")
    return Case(
        id=case_id,
        title=str(raw.get("title", case_id)),
        requests=requests,
        expects=expects,
        pieces=pieces,
        delay=delay,
        secrets=tuple(str(s) for s in raw.get("secrets", [])),
    )


def _parse_request(raw: dict[str, Any]) -> Request:
    unknown = set(raw) - _REQUEST_KEYS
    if unknown:
        raise ValueError(f"unknown request key(s) {', '.join(sorted(unknown))}")
    method = str(raw.get("method", "GET"))
    path = _parts(raw.get("path", "/search"))
    version = str(raw.get("version", "HTTP/1.1"))
    headers = [(_parts(name), _parts(value)) for name, value in raw.get("headers", [])]
    body = _parts(raw["body"]) if "body" in raw else None
    chunked = bool(raw.get("chunked", False))

    def wire(host: str, canary: str) -> bytes:
        given = [(n(host, canary), v(host, canary)) for n, v in headers]
        names = {n.lower() for n, _ in given}
        lines = [b"%s %s %s" % (method.encode(), path(host, canary), version.encode())]
        if b"host" not in names:
            lines.append(b"Host: " + host.encode())
        content = body(host, canary) if body is not None else b""
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
        elif body is not None and b"content-length" not in names:
            lines.append(b"Content-Length: %d" % len(content))
        lines.extend(n + b": " + v for n, v in given)
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if chunked:
            content = _chunked(content)
        return head + content

    return Request(method.upper(), wire)


def _parse_expect(raw: dict[str, Any]) -> Expect:
    unknown = set(raw) - _EXPECT_KEYS
    if unknown:
        raise ValueError(f"unknown expect key(s) {', '.join(sorted(unknown))}")
    outcome = str(raw.get("outcome", "any"))
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    default_status = "2xx" if outcome == "passed" else "any"
    return Expect(str(raw.get("status", default_status)), outcome)  # type: ignore[arg-type]


def _parts(spec: Any) -> Callable[[str, str], bytes]:
    """A string, or a list of parts: strings (UTF-8), ``{hex = "ff"}``, ``{repeat =
    "x", times = N}``, ``{text = "…", encoding = "shift_jis", percent = true}``.
    ``{host}`` and ``{canary}`` in strings are filled in."""
    items = spec if isinstance(spec, list) else [spec]
    fixed: list[bytes | str] = []
    for item in items:
        if isinstance(item, str):
            fixed.append(item)
        elif isinstance(item, dict) and set(item) == {"hex"}:
            fixed.append(bytes.fromhex(item["hex"]))
        elif isinstance(item, dict) and set(item) == {"repeat", "times"}:
            times = int(item["times"])
            if not 0 <= times <= MAX_REPEAT:
                raise ValueError(f"times must be 0..{MAX_REPEAT}")
            fixed.append(str(item["repeat"]).encode() * times)
        elif (
            isinstance(item, dict)
            and "text" in item
            and set(item)
            <= {
                "text",
                "encoding",
                "percent",
            }
        ):
            encoded = str(item["text"]).encode(str(item.get("encoding", "utf-8")))
            if item.get("percent"):
                encoded = quote_from_bytes(encoded, safe="").encode()
            fixed.append(encoded)
        else:
            raise ValueError(f"not a part: {item!r}")

    def render(host: str, canary: str) -> bytes:
        out = []
        for part in fixed:
            if isinstance(part, str):
                part = part.replace("{host}", host).replace("{canary}", canary).encode()
            out.append(part)
        return b"".join(out)

    return render


def _raw_method(spec: Any) -> str:
    first = spec[0] if isinstance(spec, list) and spec else spec
    return first.split(" ", 1)[0].upper() if isinstance(first, str) else "GET"


def _chunked(content: bytes, size: int = 1000) -> bytes:
    pieces = [content[i : i + size] for i in range(0, len(content), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# --- talking to the server ------------------------------------------------------------


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError("connection closed mid-response")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("connection closed mid-body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def read_response(reader: _Reader, method: str) -> Response:
    while True:
        head = reader.until(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP response: {status_line[:60]!r}")
        status = int(parts[1])
        if status != 100:
            break  # skip interim 100 Continue
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(b":") for h in lines)]
    fields = dict(headers)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int(reader.until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                reader.until(b"\r\n")
                break
            chunks.append(reader.exactly(size))
            reader.exactly(2)
        body = b"".join(chunks)
    elif b"content-length" in fields:
        body = reader.exactly(int(fields[b"content-length"]))
    else:
        body = reader.rest()
    return Response(status, headers, body)


def exchange(
    address: tuple[str, int], data: bytes, methods: Sequence[str], pieces: int, delay: float
) -> list[Response]:
    """Send ``data`` (in ``pieces`` writes, ``delay`` apart) and read one response per
    method, in order."""
    with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as sock:
        size = -(-len(data) // pieces) if data else 0
        for index in range(pieces):
            chunk = data[index * size : (index + 1) * size] if size else b""
            if chunk:
                sock.sendall(chunk)
            if delay and index < pieces - 1:
                time.sleep(delay)
        reader = _Reader(sock)
        return [read_response(reader, method) for method in methods]


# --- running cases ----------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    problems: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def new_canary() -> str:
    """A word on no list and in no dictionary, different every run."""
    return "cnry" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))


def leaked(secret_words: Sequence[str], *texts: bytes) -> list[str]:
    found = []
    for word in secret_words:
        needle = word.lower().encode()
        if needle and any(needle in text.lower() for text in texts):
            found.append(word)
    return found


def run_case(
    case: Case,
    base_url: str,
    *,
    canary: str,
    block_status: int,
    file_secrets: Sequence[str] = (),
    followup: str = DEFAULT_FOLLOWUP,
) -> Result:
    parts = urlsplit(base_url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    host = parts.netloc
    result = Result(case)
    secret_words = [canary, *file_secrets, *case.secrets]
    try:
        responses = exchange(
            address,
            case.wire(host, canary),
            [r.method for r in case.requests],
            case.pieces,
            case.delay,
        )
    except (OSError, ValueError) as exc:
        result.problems.append(f"no complete answer: {exc}")
        responses = []
    for index, (response, expect) in enumerate(zip(responses, case.expects, strict=False)):
        result.statuses.append(response.status)
        label = f"response {index + 1}: " if len(case.requests) > 1 else ""
        problem = expect.check(response.status, response.status == block_status)
        if problem:
            result.problems.append(label + problem)
        header_text = b"\n".join(k + b": " + v for k, v in response.headers)
        inspected = [header_text]
        if response.status in (block_status, *REJECTED_STATUSES):
            inspected.append(response.body)  # deterrence's pages never repeat the query
        for word in leaked(secret_words, *inspected):
            result.problems.append(f"{label}{word!r} leaked into the response")
    try:
        (after,) = exchange(
            address,
            f"GET {followup} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
            ["GET"],
            1,
            0.0,
        )
        if not 200 <= after.status < 300 or after.status == block_status:
            result.problems.append(f"follow-up request answered {after.status}")
    except (OSError, ValueError) as exc:
        result.problems.append(f"follow-up request failed: {exc}")
    return result


def run_cases(
    case_file: CaseFile,
    base_url: str,
    *,
    block_status: int,
    canary: str | None = None,
) -> list[Result]:
    canary = canary or new_canary()
    return [
        run_case(
            case,
            base_url,
            canary=canary,
            block_status=block_status,
            file_secrets=case_file.secrets,
            followup=case_file.followup,
        )
        for case in case_file.cases
    ]


# --- a server to run them against ----------------------------------------------------------


@dataclass
class Server:
    """A deterrence server in a subprocess, its output collected."""

    process: subprocess.Popen[bytes]
    base_url: str
    _output: list[bytes] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def output(self) -> bytes:
        return b"".join(self._output)

    def alive(self) -> bool:
        return self.process.poll() is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    module: str = "deterrence",
) -> Iterator[Server]:
    """Run ``python -m <module> <command> --port P`` (``deterrence`` by default) on
    127.0.0.1 until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", module, *command, "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    assert process.stdout is not None
    stdout = process.stdout

    def collect() -> None:
        for line in iter(stdout.readline, b""):
            server._output.append(line)

    server._reader = threading.Thread(target=collect, daemon=True)
    server._reader.start()
    try:
        _wait_until_listening(port, process, timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        server._reader.join(timeout=10)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deterrence.hostile", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    target.add_argument("--serve", action="store_true", help="start the demo and test it")
    parser.add_argument(
        "--cases", type=Path, action="append", help=f"case file(s) (default {DEFAULT_CASES})"
    )
    parser.add_argument("--block-status", type=int, default=451)
    parser.add_argument("--log", type=Path, help="the server's log, searched for the canary")
    args = parser.parse_args(argv)
    try:
        files = [load_cases(p) for p in (args.cases or [DEFAULT_CASES])]
    except CaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    canary = new_canary()
    with contextlib.ExitStack() as stack:
        if args.serve:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
            env = {
                "DETERRENCE_BLOCK_STATUS": str(args.block_status),
                "DETERRENCE_DATA_DIR": data_dir,
            }
            server: Server | None = stack.enter_context(serve(["demo"], env=env))
            base_url = server.base_url if server else ""
        else:
            server, base_url = None, args.url
        results = [
            r
            for f in files
            for r in run_cases(f, base_url, block_status=args.block_status, canary=canary)
        ]
        if server is not None and not server.alive():
            print("FAIL: the server exited", file=sys.stderr)
            return 1
    logs = server.output() if server is not None else b""
    if args.log is not None:
        logs += args.log.read_bytes()
    for result in results:
        status = "ok  " if result.ok else "FAIL"
        print(f"{status} {result.case.id}: {result.statuses} {'; '.join(result.problems)}")
    all_secrets = [canary, *(s for f in files for s in f.secrets)]
    all_secrets += [s for r in results for s in r.case.secrets]
    in_log = leaked(all_secrets, logs)
    for word in in_log:
        print(f"FAIL {word!r} found in the server's log", file=sys.stderr)
    passed = sum(r.ok for r in results)
    print(f"{passed}/{len(results)} cases passed; {len(in_log)} leak(s) in the log")
    return 0 if passed == len(results) and not in_log else 1


if __name__ == "__main__":
    raise SystemExit(main())
