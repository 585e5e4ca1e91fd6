"""Running an ASGI app under uvicorn for the server subcommands."""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import ASGIApp


def add_server_options(parser: argparse.ArgumentParser, *, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument(
        "--no-access-log", action="store_true", help="turn uvicorn's access log off"
    )


def serve(app: ASGIApp, args: argparse.Namespace) -> int:
    """Serve until interrupted. The access log stays on: the middleware
    redacts the lines of inspected requests (see deterrence.logs)."""
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0
