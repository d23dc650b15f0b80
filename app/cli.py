"""`fewshot` command line: serve, report (a tenant's evaluation), classify (a file; the client package's code)
and, with the meta package, meta-train / evaluate."""

from __future__ import annotations

import argparse
import sys

from app.config import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.process_tuning import bound_onednn_cache, start_heap_trimmer

    settings = Settings()
    bound_onednn_cache(settings.onednn_cache_capacity)  # before torch runs anything
    start_heap_trimmer(settings.malloc_trim_interval_s)
    from app.web.app import create_app
    from app.web.server import uvicorn_options

    host = args.host or settings.host
    port = args.port or settings.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, **uvicorn_options(settings))
    return 0


def _report(args: argparse.Namespace) -> int:
    import json
    import os

    from app.report_client import ReportError, fetch_report, render

    key = args.key if args.key is not None else os.environ.get("FEWSHOT_API_KEY")
    try:
        reply = fetch_report(args.url, args.tenant, key, args.version)
    except ReportError as exc:
        print(f"fewshot report: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2, ensure_ascii=False) if args.json else render(reply))
    return 0


def _classify(args: argparse.Namespace) -> int:
    try:
        from fewshot_client.cli import run_classify
    except ImportError:
        print("fewshot classify: needs the client package: pip install -e clients/python", file=sys.stderr)
        return 1
    return run_classify(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (settings from FEWSHOT_* env vars)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(handler=_serve)
    report = commands.add_parser("report", help="print a tenant's evaluation report (POST /tenants/{id}/evaluate)")
    report.add_argument("--tenant", required=True, help="tenant id")
    report.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    report.add_argument("--key", default=None, help="API key (default: $FEWSHOT_API_KEY)")
    report.add_argument("--version", type=int, default=None, help="a retained earlier version (default: current)")
    report.add_argument("--json", action="store_true", help="print the reply as JSON instead of tables")
    report.set_defaults(handler=_report)
    classify = commands.add_parser("classify", help="classify a CSV/JSONL file through /predict (resumable)")
    classify.set_defaults(handler=_classify)
    try:
        from fewshot_client.cli import add_classify_arguments
    except ImportError:  # the client package (clients/python) is not installed: _classify says so
        classify.add_argument("args", nargs=argparse.REMAINDER)
    else:
        add_classify_arguments(classify)
    from app.meta.cli import register_meta_commands

    register_meta_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
