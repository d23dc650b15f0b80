"""Fuzz a live server far beyond CI's run: schemathesis over every operation of the OpenAPI schema, positive and
negative data, against a real `fewshot serve` process with Redis and auth on.

    python -m bench.fuzz_live --examples 600 --out bench/results/fuzz_live.json

Every response must be a non-5xx whose status, content type, headers and body match the schema; schema-violating
data must be rejected with a 4xx. Writes a JSON summary (requests per operation, mode and status; failures) and
exits non-zero on any failure or server error. CI runs the smaller in-process version (tests/reliability).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import schemathesis

from harness.fuzz import fuzz_schema
from harness.server_proc import redis_and_server

ADMIN_KEY = "fsk_live-fuzz-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SERVER_ENV = {  # auth on as deployed; small limits keep valid bodies cheap so the run reaches more operations
    "FEWSHOT_AUTH_ENABLED": "true",
    "FEWSHOT_ADMIN_KEY": ADMIN_KEY,
    "FEWSHOT_MAX_EXAMPLES": "12",
    "FEWSHOT_MAX_LABELS": "4",
    "FEWSHOT_MAX_TEXTS": "4",
    "FEWSHOT_MAX_TEXT_CHARS": "64",
    "FEWSHOT_MAX_LABEL_CHARS": "16",
    "FEWSHOT_MAX_TOP_K": "4",
}
SEED_SUPPORT = [
    {"text": text, "label": label}
    for label, texts in {
        "card_arrival": ["my card has not arrived yet", "when will my new card get here"],
        "exchange_rate": ["what is the euro exchange rate", "how much is a dollar in pounds"],
    }.items()
    for text in texts
]


def run_fuzz(base: str, examples: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=60) as http:
        seeded = http.post("/adapt", json={"tenant_id": "acme-support", "examples": SEED_SUPPORT}, headers=AUTH)
        seeded.raise_for_status()
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    started = time.monotonic()
    run = fuzz_schema(schema, examples, AUTH, progress=True)
    return {
        "requests": run.requests,
        "server_errors": run.server_errors,
        "failures": run.failures,
        "operations": len({operation for operation, _, _ in run.statuses}),
        "examples_per_operation_and_mode": examples,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {" | ".join(map(str, key)): count for key, count in sorted(run.statuses.items())},
        "server_env": SERVER_ENV | {"FEWSHOT_ADMIN_KEY": "(set)"},
        "schemathesis": schemathesis.__version__ if hasattr(schemathesis, "__version__") else "unknown",
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=600, help="hypothesis examples per operation and mode")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz_live.json"))
    args = parser.parse_args(argv)
    with redis_and_server(extra_env=SERVER_ENV) as (_, base):
        summary = run_fuzz(base, args.examples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{summary['requests']} requests, {summary['server_errors']} server errors, {len(summary['failures'])} failures"
    )
    for failure in summary["failures"]:
        print(failure, file=sys.stderr)
    return 1 if summary["failures"] or summary["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
