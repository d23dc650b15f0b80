"""`fewshot-client classify --tenant T input.csv --out out.jsonl`: batch classification from the command line (the
service's `fewshot classify` runs the same code)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from fewshot_client import calls
from fewshot_client.async_client import AsyncClient
from fewshot_client.batch import Summary, classify_file
from fewshot_client.errors import FewshotError
from fewshot_client.retry import RetryPolicy


def add_classify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="a .csv/.tsv (with a `text` column) or .jsonl file (`text` field)")
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--out", type=Path, required=True, help="JSONL results; an existing file is resumed")
    parser.add_argument("--batch", type=int, default=32, help="texts per /predict request (default 32)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--top-k", type=int, default=3, help="ranked labels per row (default 3)")
    parser.add_argument("--explain", type=int, default=0, help="evidence per row: nearest support examples (0-10)")
    parser.add_argument("--url", default=None, help=f"the service (default: ${calls.URL_ENV} or {calls.DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help=f"API key (default: ${calls.API_KEY_ENV})")
    parser.add_argument("--retries", type=int, default=6, help="attempts per request on 429/503 (default 6)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


async def _classify(args: argparse.Namespace) -> Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first_interrupt() -> None:  # finish the batches in flight; a second Ctrl-C aborts at once
        print("\ninterrupted: finishing the batches in flight (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, first_interrupt)
    async with AsyncClient(args.url, api_key=args.api_key, retry=RetryPolicy(max_attempts=args.retries)) as client:
        return await classify_file(
            client,
            args.tenant,
            args.input,
            args.out,
            batch_size=args.batch,
            concurrency=args.concurrency,
            top_k=args.top_k,
            explain=args.explain,
            progress=not args.quiet,
            stop=stop,
        )


def run_classify(args: argparse.Namespace) -> int:
    """Run a parsed `classify` command; 0 when every row is done, 3 when stopped early (Ctrl-C), 130 when
    aborted (a second Ctrl-C), 1 on a failure."""
    try:
        summary = asyncio.run(_classify(args))
    except KeyboardInterrupt:  # the second Ctrl-C: the output holds every finished batch
        print("\nclassify: aborted; run again to resume", file=sys.stderr)
        return 130
    except FewshotError as exc:
        print(f"classify: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"classify: {exc}", file=sys.stderr)
        return 1
    state = "stopped early; run again to resume" if summary.stopped else "done"
    print(
        f"classify: {state}: {summary.classified} classified, {summary.errors} error rows, "
        f"{summary.skipped} already done, {summary.total} rows in the input",
        file=sys.stderr,
    )
    return 3 if summary.stopped else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fewshot-client", description="fewshot-service client")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify a CSV/JSONL file through /predict (resumable)")
    add_classify_arguments(classify)
    args = parser.parse_args(argv)
    return run_classify(args)


if __name__ == "__main__":
    sys.exit(main())
