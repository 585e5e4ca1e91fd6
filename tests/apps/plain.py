"""An app an operator would serve with plain ``uvicorn tests.apps.plain:app``:
the middleware must redact the access log without any help from our CLI."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from deterrence import DeterrenceMiddleware


async def search(request: Request) -> PlainTextResponse:
    return PlainTextResponse("results")


app = Starlette(routes=[Route("/search", search, methods=["GET", "POST"])])
app.add_middleware(DeterrenceMiddleware, data_dir=os.environ.get("APP_DATA_DIR", "data"))
