"""Schemathesis over every operation of an OpenAPI schema, positive and negative data: the one driver behind the
CI fuzz test (in-process ASGI) and `bench.fuzz_live` (a live server).

Every response must be a non-5xx whose status, content type, headers and body match what the schema documents;
schema-violating data must be rejected with a 4xx. Hypothesis shrinks and reports the first failure of each
operation and mode; the run goes on with the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@dataclass
class FuzzRun:
    """Responses per (operation, mode, status), failures, and the operations with nothing to make invalid."""

    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[tuple[Any, str]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(count for (_, _, status), count in self.statuses.items() if status >= 500)


def fuzz_operation(operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str], run: FuzzRun) -> None:
    """One operation in one generation mode; raises the first (shrunk) failure."""
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
    def check(case: Any) -> None:
        response = case.call()
        run.statuses[(operation.label, mode.value, response.status_code)] += 1
        case.validate_response(response, checks=checks)

    check()


def fuzz_schema(schema: Any, examples: int, headers: dict[str, str], progress: bool = False) -> FuzzRun:
    """Every operation of `schema` in both modes, `examples` hypothesis examples each."""
    run = FuzzRun()
    for operation in (result.ok() for result in schema.get_all_operations()):
        for mode in MODES:
            before = run.requests
            try:
                fuzz_operation(operation, mode, examples, headers, run)
            except Unsatisfiable:
                run.unsatisfiable.append((operation, mode.value))  # no parameters and no body to make invalid
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure
                run.failures.append(f"{operation.label} [{mode.value}]: {exc}"[:4000])
            if progress:
                print(f"{operation.label:40s} {mode.value:8s} {run.requests - before:6d} requests", flush=True)
    return run
