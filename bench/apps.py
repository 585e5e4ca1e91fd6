"""The apps under load in bench/middleware, bare or behind DeterrenceMiddleware
(BENCH_MIDDLEWARE=1):

- ``demo`` (BENCH_APP=demo): the demo search site, an HTML results page;
- ``json`` (BENCH_APP=json): a minimal JSON endpoint over the same catalogue —
  the worst case for the middleware's relative overhead, since the app itself
  does almost nothing.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from deterrence.demo import create_site, load_catalogue, search

BOOKS = load_catalogue()


async def results(request: Request) -> JSONResponse:
    found = search(BOOKS, request.query_params.get("q", ""))
    return JSONResponse({"results": [book.title for book in found[:10]]})


bare: ASGIApp = (
    create_site()
    if os.environ.get("BENCH_APP", "json") == "demo"
    else Starlette(routes=[Route("/search", results)])
)
app: ASGIApp = bare
if os.environ.get("BENCH_MIDDLEWARE") == "1":
    from deterrence import DeterrenceMiddleware

    app = DeterrenceMiddleware(bare, data_dir=os.environ.get("BENCH_DATA_DIR", "bench-data"))
