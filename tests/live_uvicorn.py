"""A real uvicorn server (or the decision service's builtin one) on 127.0.0.1
and a free port, in a background thread, and what its /metrics say."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp

GUNICORN_CONF = Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"


def gunicorn_command(app: str, *options: str) -> list[str]:
    """gunicorn from this interpreter's environment with the shipped config
    (deploy/gunicorn.conf.py: uvicorn workers, multiprocess metrics)."""
    return [str(Path(sys.executable).parent / "gunicorn"), "-c", str(GUNICORN_CONF), *options, app]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: ASGIApp, **config: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields the base URL. ``config`` goes to
    uvicorn.Config (lifespan "on" and log level "warning" unless given)."""
    port = free_port()
    options: dict[str, Any] = {"lifespan": "on", "log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def serve_builtin(app: ASGIApp, **options: Any) -> Iterator[str]:
    """Serve ``app`` with deterrence.decision_server until the block ends (quick
    answers from ``app.quick_answer`` when it has one); yields the base URL."""
    from deterrence import decision_server

    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    options.setdefault("quick", getattr(app, "quick_answer", None))

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(
            decision_server.serve(
                app, host="127.0.0.1", port=port, ready=ready.set, stop=stop, **options
            )
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(15):
        raise RuntimeError("the decision server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
        loop.close()


def metric(base: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels, read from ``base``/metrics
    (0 when there is none)."""
    text = httpx2.get(f"{base}/metrics", timeout=10, trust_env=False).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
