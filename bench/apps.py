"""The app under load in bench/middleware: the same small search endpoint,
bare or behind DeterrenceMiddleware (chosen by BENCH_MIDDLEWARE=1)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from deterrence.demo import load_catalogue, search

BOOKS = load_catalogue()


async def results(request: Request) -> JSONResponse:
    found = search(BOOKS, request.query_params.get("q", ""))
    return JSONResponse({"results": [book.title for book in found[:10]]})


bare = Starlette(routes=[Route("/search", results)])
app: ASGIApp = bare
if os.environ.get("BENCH_MIDDLEWARE") == "1":
    from deterrence import DeterrenceMiddleware

    app = DeterrenceMiddleware(bare, data_dir=os.environ.get("BENCH_DATA_DIR", "bench-data"))
