"""``deterrence authz``: the decision service for nginx, Envoy, Traefik and Caddy."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from deterrence.commands._common import add_lists_option, report_list_error, settings_overrides
from deterrence.commands.serve import add_server_options, prepare_start_up_heap, serve

if TYPE_CHECKING:
    from deterrence.authz import AuthzApp


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "authz",
        help="run the decision service for nginx, Envoy, Traefik and Caddy",
        description="Answers nginx auth_request (/nginx), Traefik forwardAuth (/traefik), "
        "Caddy forward_auth (/caddy) and Envoy ext_authz HTTP (/envoy) about searches, and "
        "serves the warning page under DETERRENCE_PREFIX and metrics at /metrics. "
        "Example configurations: deploy/.",
    )
    add_server_options(parser, port=8001)
    parser.add_argument(
        "--server",
        choices=("builtin", "uvicorn"),
        default="builtin",
        help="builtin (default): deterrence's own HTTP/1.1 server, which answers a repeat "
        "of an innocent search without an ASGI cycle, about 3 times cheaper per decision; "
        "uvicorn: for its options, such as TLS (the access log applies to it only)",
    )
    add_lists_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deterrence.authz import AuthzApp
    from deterrence.lists import ListError
    from deterrence.settings import Settings

    try:
        app = AuthzApp(Settings(**settings_overrides(args)))
    except ListError as exc:
        report_list_error(exc)
        return 1
    print(f"deterrence authz: http://{args.host}:{args.port}/", flush=True)
    if args.server == "uvicorn":
        return serve(app, args, app.settings, proxy_headers=False)
    return serve_builtin(app, args)


def serve_builtin(app: AuthzApp, args: argparse.Namespace) -> int:
    import asyncio

    from deterrence import decision_server

    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # Windows
        loop_factory = None
    prepare_start_up_heap(app.settings)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(
            decision_server.serve(app, host=args.host, port=args.port, quick=app.quick_answer)
        )
    return 0
