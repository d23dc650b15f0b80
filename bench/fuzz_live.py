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
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.server_proc import redis_and_server

ADMIN_KEY = "fsk_live-fuzz-admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
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


def fuzz_operation(operation: Any, mode: GenerationMode, examples: int, statuses: Counter[str]) -> None:
    """One operation in one generation mode; hypothesis shrinks and re-raises the first failure."""
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=AUTH))
    def run(case: Any) -> None:
        response = case.call(timeout=60)
        statuses[f"{operation.label} | {mode.value} | {response.status_code}"] += 1
        case.validate_response(response, checks=checks)

    run()


def run_fuzz(base: str, examples: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=60) as http:
        seeded = http.post("/adapt", json={"tenant_id": "acme-support", "examples": SEED_SUPPORT}, headers=AUTH)
        seeded.raise_for_status()
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            before = sum(statuses.values())
            try:
                fuzz_operation(operation, mode, examples, statuses)
            except Unsatisfiable:
                pass  # nothing to make invalid: no parameters and no body
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:4000])
            print(f"{operation.label:40s} {mode.value:8s} {sum(statuses.values()) - before:6d} requests", flush=True)
    server_errors = sum(count for key, count in statuses.items() if int(key.rsplit("|", 1)[1]) >= 500)
    return {
        "requests": sum(statuses.values()),
        "server_errors": server_errors,
        "failures": failures,
        "operations": len(operations),
        "examples_per_operation_and_mode": examples,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": dict(sorted(statuses.items())),
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
