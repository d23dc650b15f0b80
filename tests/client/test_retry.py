"""Retry decisions and timing, on an httpx MockTransport (a transport test: the server's side is scripted)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from fewshot_client import AsyncClient, Client, ConnectionFailed, RateLimited, RetryPolicy, ServerError
from fewshot_client.retry import parse_retry_after

ADAPTED = {
    "tenant_id": "t",
    "version": 2,
    "labels": ["a", "b"],
    "counts": {"a": 1, "b": 1},
    "n_examples": 2,
    "inner_steps": 5,
    "oos_threshold": 0.3,
    "encoder_fingerprint": "f",
    "timings_ms": {"total": 1.0},
}
EXAMPLES = [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}]


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}}, headers=headers)


class Script:
    """Answers requests from a list of responses (or exceptions to raise), recording each request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(script: Script, sleeps: list[float], attempts: int = 4) -> Client:
    return Client(
        "http://fewshot.test",
        api_key="k",
        transport=httpx.MockTransport(script),
        retry=RetryPolicy(max_attempts=attempts, seed=0),
        sleep=sleeps.append,
    )


def test_429_waits_exactly_retry_after_then_succeeds() -> None:
    sleeps: list[float] = []
    script = Script(_error(429, "rate_limited", {"Retry-After": "7"}), httpx.Response(200, json=ADAPTED))
    with _client(script, sleeps) as client:
        assert client.adapt("t", EXAMPLES).version == 2  # a 429 is a refusal: safe even for a write
    assert sleeps == [7.0] and len(script.requests) == 2
    assert script.requests[0].headers["authorization"] == "Bearer k"


def test_backoff_grows_exponentially_with_jitter_and_gives_up_typed() -> None:
    sleeps: list[float] = []
    script = Script(*[_error(503, "store_unavailable") for _ in range(4)])
    with _client(script, sleeps) as client, pytest.raises(ServerError) as failed:
        client.tenant("t")
    assert failed.value.status == 503 and failed.value.code == "store_unavailable"
    assert len(script.requests) == 4 and len(sleeps) == 3
    for attempt, wait in enumerate(sleeps):
        ceiling = 0.25 * 2**attempt
        assert ceiling / 2 <= wait <= ceiling
    assert sleeps[2] > sleeps[0]


def test_retry_after_is_capped_and_attempts_are_bounded() -> None:
    sleeps: list[float] = []
    script = Script(_error(429, "rate_limited", {"Retry-After": "3600"}), _error(429, "rate_limited"))
    with _client(script, sleeps, attempts=2) as client, pytest.raises(RateLimited) as limited:
        client.predict("t", ["x"])
    assert sleeps == [60.0] and len(script.requests) == 2 and limited.value.retry_after is None


def test_a_write_is_not_replayed_after_it_may_have_been_applied() -> None:
    sleeps: list[float] = []
    script = Script(_error(503, "store_unavailable"))
    with _client(script, sleeps) as client, pytest.raises(ServerError):
        client.adapt("t", EXAMPLES)
    assert len(script.requests) == 1 and sleeps == []

    script = Script(httpx.ReadError("connection reset"))
    with _client(script, sleeps) as client, pytest.raises(ConnectionFailed):
        client.append("t", EXAMPLES)
    assert len(script.requests) == 1


def test_a_guarded_write_and_refusals_before_work_are_retried() -> None:
    sleeps: list[float] = []
    script = Script(_error(503, "store_unavailable"), httpx.Response(200, json=ADAPTED))
    with _client(script, sleeps) as client:
        client.append("t", EXAMPLES, expected_version=1)  # a replay of an applied write would get 409
    assert len(script.requests) == 2 and b'"expected_version":1' in script.requests[0].content

    script = Script(_error(503, "overloaded"), httpx.ConnectError("refused"), httpx.Response(200, json=ADAPTED))
    with _client(script, sleeps) as client:
        client.adapt("t", EXAMPLES)  # refused before any work, or never sent
    assert len(script.requests) == 3


def test_reads_are_retried_after_a_broken_connection() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ReadError("reset"), httpx.Response(200, json={"tenants": ["a"]}))
    with _client(script, sleeps) as client:
        assert list(client.iter_tenants()) == ["a"]
    assert len(sleeps) == 1


def test_async_client_honours_retry_after() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    script = Script(_error(429, "tenant_busy", {"Retry-After": "2"}), httpx.Response(200, json={"tenants": []}))

    async def scenario() -> list[str]:
        async with AsyncClient(
            "http://fewshot.test", transport=httpx.MockTransport(script), retry=RetryPolicy(seed=0), sleep=sleep
        ) as client:
            return (await client.tenants()).tenants

    assert asyncio.run(scenario()) == [] and sleeps == [2.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0", 0.0), ("-3", 0.0), ("soon", None), (None, None), ("Fri, 04 Dec 2026 10:00:30 GMT", 30.0)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
