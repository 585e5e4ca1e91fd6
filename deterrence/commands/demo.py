"""``deterrence demo``: run the demo search site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deterrence.commands._common import add_lists_option, report_list_error, settings_overrides
from deterrence.commands.serve import add_server_options, serve


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the demo search site",
        description="A small public-domain library search behind the middleware, with the "
        "warning page, /metrics and the dashboard.",
    )
    add_server_options(parser, port=8000)
    add_lists_option(parser)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the aggregate store lives (default: DETERRENCE_DATA_DIR or ./deterrence-data)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from deterrence.dashboard import DashboardExposureError, check_exposure
    from deterrence.demo import DEMO_TRIGGER, DEMO_WARN_TRIGGER, create_app
    from deterrence.lists import ListError
    from deterrence.settings import Settings

    overrides = settings_overrides(args)
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    try:
        check_exposure(args.host, settings)
    except DashboardExposureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except ListError as exc:
        report_list_error(exc)
        return 1
    base = f"http://{args.host}:{args.port}"
    prefix = app.settings.prefix
    print(f"deterrence demo search site: {base}/")
    print(f"  innocent search:  {base}/search?q=dickens")
    print(f"  warning page:     {base}/search?q={DEMO_TRIGGER}")
    print(f"  warning banner:   {base}/search?q={DEMO_WARN_TRIGGER}")
    print(f"  metrics:          {base}{app.settings.metrics_path}")
    print(f"  dashboard:        {base}{prefix}/dashboard")
    return serve(app, args, settings)
