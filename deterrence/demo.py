"""The demo search site of ``deterrence demo``: a small real search over a
bundled catalogue of public-domain books, behind :class:`DeterrenceMiddleware`
with the shipped demo lists, plus ``/metrics`` and the dashboard.

It is also the reference integration: look here for how an app mounts the
middleware, shows the ``warn`` banner and exposes the dashboard.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import tomli
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from deterrence.dashboard import Dashboard
from deterrence.middleware import DeterrenceMiddleware, warning_banner
from deterrence.settings import Settings
from deterrence.text import canonicalize

CATALOGUE = Path(__file__).parent / "data" / "catalogue.toml"
DEMO_TRIGGER = "zorblax"
"""An invented word on the shipped demo list: searching it shows the warning."""
DEMO_WARN_TRIGGER = "mirvelsprocket"
"""An invented word on the shipped warn-only list: results with a banner."""

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#234;color:#fff;padding:1rem 1.5rem}
header a{color:#fff;text-decoration:none;font-weight:600}
main{max-width:46rem;margin:0 auto;padding:1rem 1.5rem}
form{display:flex;gap:.5rem;margin:1rem 0}
input[type=search]{flex:1;font:inherit;padding:.5rem;border:2px solid #567;border-radius:4px}
button{font:inherit;padding:.5rem 1rem;border:0;border-radius:4px;background:#234;color:#fff}
:focus-visible{outline:3px solid #c60;outline-offset:2px}
.visually-hidden{position:absolute;left:-9999px}
ol{padding-left:1.25rem}li{margin:.75rem 0}.meta{color:#555;font-size:.9rem}
"""


@dataclass(frozen=True, slots=True)
class Book:
    title: str
    author: str
    year: int
    subjects: tuple[str, ...]
    summary: str
    words: frozenset[str] = frozenset()
    """Canonical words of the whole entry, computed once at load."""


def load_catalogue(path: Path = CATALOGUE) -> tuple[Book, ...]:
    data = tomli.loads(path.read_text(encoding="utf-8"))
    return tuple(
        Book(
            b["title"],
            b["author"],
            b["year"],
            tuple(b["subjects"]),
            b["summary"],
            frozenset(
                canonicalize(
                    " ".join((b["title"], b["author"], *b["subjects"], b["summary"]))
                ).split()
            ),
        )
        for b in data["book"]
    )


def search(books: tuple[Book, ...], query: str) -> list[Book]:
    """Books ranked by how many query words they contain (canonical forms,
    so ``dickens`` finds Dickens and ``bronte`` finds Brontë)."""
    wanted = set(canonicalize(query).split())
    if not wanted:
        return []
    scored = [(len(wanted & book.words), book) for book in books]
    return [book for score, book in sorted(scored, key=lambda s: -s[0]) if score]


def _page(body: str, query: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Public-domain library search</title><style>{_STYLE}</style></head>
<body><header><a href="/">Public-domain library</a></header>
<main><form action="/search" method="get" role="search">
<label for="q" class="visually-hidden">Search the catalogue</label>
<input type="search" id="q" name="q" value="{html.escape(query)}"
 placeholder="Search titles, authors, subjects">
<button type="submit">Search</button></form>{body}</main></body></html>"""


def create_site() -> Starlette:
    """The search site itself, without deterrence (benchmarks compare the two)."""
    books = load_catalogue()

    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse(
            _page(
                "<p>A small catalogue of public-domain books. Try <em>dickens</em>, "
                "<em>science fiction</em> or <em>sea</em>.</p>"
            )
        )

    async def results(request: Request) -> HTMLResponse:
        query = request.query_params.get("q", "")
        found = search(books, query)
        items = "".join(
            f"<li><strong>{html.escape(b.title)}</strong> — {html.escape(b.author)}"
            f' <span class="meta">({b.year if b.year > 0 else f"c. {-b.year} BC"})</span>'
            f"<br>{html.escape(b.summary)}</li>"
            for b in found
        )
        listing = f"<ol>{items}</ol>" if found else "<p>No books found.</p>"
        count = f"<p>{len(found)} result{'s' if len(found) != 1 else ''}</p>"
        return HTMLResponse(_page(f"{warning_banner(request)}{count}{listing}", query))

    return Starlette(routes=[Route("/", home), Route("/search", results)])


def create_app(settings: Settings | None = None) -> DeterrenceMiddleware:
    """The demo: the site behind the middleware, with the dashboard mounted."""
    middleware = DeterrenceMiddleware(create_site(), settings)
    # Any app mounts the dashboard the same way; it answers only with credentials,
    # or to loopback clients when none are configured.
    middleware.mount("dashboard", Dashboard(middleware.settings, recorder=middleware.recorder))
    return middleware
