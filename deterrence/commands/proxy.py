"""``deterrence proxy``: the reverse proxy for sites that are not written in Python."""

from __future__ import annotations

import argparse
import sys

from deterrence.commands._common import add_lists_option, report_list_error, settings_overrides
from deterrence.commands.serve import add_server_options, serve


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
    add_lists_option(parser)
    parser.set_defaults(handler=run)


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
        report_list_error(exc)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    proxy.recorder = app.recorder
    print(f"deterrence proxy: http://{args.host}:{args.port}/ -> {proxy.upstream}", flush=True)
    # proxy_headers=False: the proxy decides itself whom to believe about
    # X-Forwarded-*; date_header=False: the upstream's Date header is forwarded.
    return serve(app, args, settings, proxy_headers=False, date_header=False)
