"""``deterrence authz``: the decision service for nginx, Envoy, Traefik and Caddy."""

from __future__ import annotations

import argparse

from deterrence.commands._common import add_lists_option, report_list_error, settings_overrides
from deterrence.commands.serve import add_server_options, serve


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
    return serve(app, args, proxy_headers=False)
