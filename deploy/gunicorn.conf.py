"""Gunicorn configuration for an ASGI app that uses deterrence, with uvicorn workers.

    gunicorn -c deploy/gunicorn.conf.py myproject.asgi:app

Several worker processes each count what they see. prometheus-client's
multiprocess mode makes ``/metrics`` (served by whichever worker gets the scrape)
report the sum over all workers:

* ``PROMETHEUS_MULTIPROC_DIR`` must name a directory before any worker imports
  prometheus_client. If it is not set, this file sets it to a new temporary
  directory. Metric files (``*.db``) left there by an earlier run are removed when
  gunicorn starts, or their counts would be added to this run's.
* When a worker exits, ``child_exit`` calls ``mark_process_dead`` so that gauges
  with a ``live*`` mode (``deterrence_list_terms``) forget that worker. Counters
  and histograms of a dead worker are kept, so totals do not drop on a restart.
* With ``DETERRENCE_METRICS_PORT`` set, the master process serves the summed
  metrics on that port (``DETERRENCE_METRICS_HOST``, default 127.0.0.1); the
  workers see the port taken and leave it to the master, which outlives them.

The SQLite aggregate store needs nothing here: every worker flushes its own counts
into the shared hourly buckets (WAL mode, UPSERT), and again when it stops.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="deterrence-metrics-")

try:  # the maintained home of the worker class (uvicorn.workers is deprecated)
    import uvicorn_worker  # noqa: F401

    worker_class = "uvicorn_worker.UvicornWorker"
except ImportError:
    worker_class = "uvicorn.workers.UvicornWorker"

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = 10


def on_starting(server: Any) -> None:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def when_ready(server: Any) -> None:
    port = os.environ.get("DETERRENCE_METRICS_PORT")
    if not port:
        return
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from deterrence.metrics import serve_metrics_port

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    host = os.environ.get("DETERRENCE_METRICS_HOST", "127.0.0.1")
    serve_metrics_port(registry, host, int(port))  # with DESIGN §6's headers
    server.log.info("metrics of all workers on http://%s:%s/metrics", host, port)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
