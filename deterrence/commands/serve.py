"""Running an ASGI app under uvicorn for the server subcommands."""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from deterrence.hugepages import back_heap_with_huge_pages
from deterrence.settings import Settings

logger = logging.getLogger("deterrence.serve")


def add_server_options(parser: argparse.ArgumentParser, *, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument(
        "--no-access-log", action="store_true", help="turn uvicorn's access log off"
    )


def serve(app: ASGIApp, args: argparse.Namespace, settings: Settings, **options: Any) -> int:
    """Serve until interrupted. The access log stays on unless turned off: the
    middleware redacts it (see deterrence.logs). ``options`` go to uvicorn.Config."""
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        server_header=False,
        lifespan="on",
        **options,
    )
    prepare_start_up_heap(settings)
    uvicorn.Server(config).run()
    return 0


def prepare_start_up_heap(settings: Settings) -> None:
    """Take what is alive at start-up (modules, the app, its first matcher) out of
    the cycle collector's view. It lives as long as the process anyway, and every
    full collection walked it again: 77,000 objects and 65 ms in the proxy at
    5,000 terms, and each reload sets one off. Garbage is collected first; a
    frozen object is still freed when its last reference goes (a replaced
    matcher): only a cycle among frozen objects would never be. Then, unless
    ``settings.huge_pages`` is off, the heap goes on huge pages (deterrence.hugepages)."""
    gc.collect()
    gc.freeze()
    if settings.huge_pages:
        collapsed = back_heap_with_huge_pages()
        logger.info("start-up heap: %d MiB on huge pages", collapsed >> 20)
