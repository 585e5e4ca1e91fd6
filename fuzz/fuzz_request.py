"""Coverage-guided fuzzing (atheris, libFuzzer) of request decoding and matching.

Each input becomes a request the way a client could send it — a method, a query
string, a Content-Type and a body — and goes through the middleware's own extraction
(``deterrence.extract.form_values`` on the query string, as the middleware calls it,
and :meth:`DeterrenceMiddleware._body_texts`) and then :meth:`Matcher.match` over the
shipped lists, cut to ``max_query_chars`` as the middleware does — but not through
the middleware's error handling or its memo. Anything that raises is a finding: the
middleware would answer it per ``on_error`` and count it, but it should never happen.

    python fuzz/fuzz_request.py -max_total_time=60            # a bounded run
    python fuzz/fuzz_request.py fuzz/corpus -max_total_time=600  # keep a corpus

tests/test_atheris.py runs it for 20 seconds.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports(include=["deterrence"]):
    from starlette.datastructures import Headers

    from deterrence import extract
    from deterrence.matcher import Matcher
    from deterrence.middleware import DeterrenceMiddleware
    from deterrence.resources import KEYWORD_LISTS_DIR

CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=iso-8859-1",
    "application/x-www-form-urlencoded; charset=shift_jis",
    "application/x-www-form-urlencoded; charset=idna",
    "multipart/form-data; boundary=XyZ",
    'multipart/form-data; boundary="a b"; charset=utf-16',
    "application/json",
    "application/json; charset=utf-16",
    "application/problem+json; charset=punycode",
]


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")


MIDDLEWARE = DeterrenceMiddleware(
    _app,  # type: ignore[arg-type]
    lists=[KEYWORD_LISTS_DIR],
    store_enabled=False,
    redact_access_log=False,
    query_params=["q", "query"],
)
MATCHER: Matcher = MIDDLEWARE.matcher
LIMIT = MIDDLEWARE.settings.max_query_chars


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        content_type = fdp.PickValueInList(CONTENT_TYPES).encode()
    else:
        content_type = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
    query = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    scope = {"type": "http", "query_string": query, "headers": [(b"content-type", content_type)]}
    texts = list(extract.form_values(query, MIDDLEWARE.query_params))
    # JSON too deep to parse raises TooDeep, which the middleware answers per on_oversize.
    with contextlib.suppress(extract.TooDeep):
        texts.extend(MIDDLEWARE._body_texts(body, Headers(scope=scope)))
    for text in texts:
        assert isinstance(text, str)
        MATCHER.match(text[:LIMIT])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
