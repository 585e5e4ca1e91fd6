"""``deterrence authz``: the decision service for nginx, Envoy, Traefik and Caddy."""

from __future__ import annotations

import argparse
import sys

from deterrence.commands.proxy import add_lists_argument, run_server, settings_overrides
from deterrence.commands.serve import add_server_options


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
    add_lists_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deterrence.authz import AuthzApp
    from deterrence.lists import ListError
    from deterrence.settings import Settings

    try:
        app = AuthzApp(Settings(**settings_overrides(args)))
    except ListError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"deterrence authz: http://{args.host}:{args.port}/", flush=True)
    return run_server(app, args, proxy_headers=False)
