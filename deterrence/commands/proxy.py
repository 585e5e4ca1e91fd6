"""``deterrence proxy``: the reverse proxy for sites that are not written in Python."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deterrence.commands.serve import add_server_options


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="run the reverse proxy in front of a site",
        description="Forward every request to the upstream site. Searches "
        "(DETERRENCE_SEARCH_PATHS, default /search with parameter q) are matched first and get "
        "the warning page on a match. Serves the warning page under DETERRENCE_PREFIX and "
        "metrics at /metrics.",
    )
    parser.add_argument(
        "--upstream",
        metavar="URL",
        help="the site, e.g. http://127.0.0.1:3000 (default: DETERRENCE_UPSTREAM)",
    )
    add_server_options(parser, port=8080)
    add_lists_argument(parser)
    parser.set_defaults(handler=run)


def add_lists_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lists",
        action="append",
        metavar="PATH",
        help="a list file or a directory of them; repeatable "
        "(default: DETERRENCE_LISTS or the shipped demo lists)",
    )


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given on the command line, so DETERRENCE_* still applies otherwise."""
    return {"lists": args.lists} if args.lists else {}


def run(args: argparse.Namespace) -> int:
    from deterrence.lists import ListError
    from deterrence.middleware import DeterrenceMiddleware
    from deterrence.proxy import ProxyApp
    from deterrence.settings import Settings

    overrides = settings_overrides(args)
    if args.upstream:
        overrides["upstream"] = args.upstream
    settings = Settings(**overrides)
    try:
        proxy = ProxyApp.from_settings(settings)
        app = DeterrenceMiddleware(proxy, settings)
    except ListError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    proxy.recorder = app.recorder
    print(f"deterrence proxy: http://{args.host}:{args.port}/ -> {proxy.upstream}", flush=True)
    return run_server(app, args, proxy_headers=False, date_header=False)


def run_server(app: Any, args: argparse.Namespace, **options: Any) -> int:
    """uvicorn, run programmatically. The access log stays on: the middleware redacts
    the lines of inspected requests. ``proxy_headers=False``: the proxy decides itself
    whom to believe about X-Forwarded-*; ``date_header=False``: the upstream's Date
    header is forwarded, and uvicorn would add a second one."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        server_header=False,
        lifespan="on",
        **options,
    )
    uvicorn.Server(config).run()
    return 0
