"""Classify a CSV or JSONL file through /predict: batches of texts, a bounded number in flight, one result row per
input row appended to a JSONL output as each batch completes, so an interrupted run resumes where it stopped.

Each output row: `{"row", "id", "label", "score", "out_of_scope", "top_k", "error", "input"}` (`row`: the input
row number, 0-based; `input`: the other input columns). A row the server refuses (e.g. an empty text, 422
`empty_text`) becomes an error row (`error: {"status", "code", "message"}`) and the run goes on: a refused batch is
split in halves until the refused rows are alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fewshot_client import calls
from fewshot_client.async_client import AsyncClient
from fewshot_client.errors import FewshotError, InvalidRequest
from fewshot_client.progress import ProgressBar
from fewshot_client.rows import Row, count_rows, finished_rows, read_rows

# 422/413 codes that a smaller batch can avoid: a row's own text, or the batch's size
SPLITTABLE_CODES = frozenset({"empty_text", "invalid_text", "text_too_long", "too_many_texts", "payload_too_large"})


@dataclass
class Summary:
    """What a run did: `total` input rows, `skipped` (finished by an earlier run), `classified` and `errors`
    (this run), `requests` sent, `stopped` (asked to stop before the end)."""

    total: int = 0
    skipped: int = 0
    classified: int = 0
    errors: int = 0
    requests: int = 0
    stopped: bool = False
    batches: int = 0

    @property
    def done(self) -> int:
        return self.skipped + self.classified + self.errors


@dataclass
class _Job:
    client: AsyncClient
    tenant_id: str
    top_k: int | None
    explain: int
    out: TextIO
    summary: Summary
    progress: ProgressBar | None
    should_stop: Callable[[Summary], bool] | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failure: BaseException | None = None


def _result_row(row: Row, prediction: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = {"row": row.index, "id": row.id}
    if prediction is not None:
        result.update(
            label=prediction.get("label"),
            score=prediction.get("score"),
            out_of_scope=prediction.get("out_of_scope"),
            top_k=prediction.get("top_k", []),
        )
        if prediction.get("labels") is not None:
            result["labels"] = prediction["labels"]
        if prediction.get("evidence") is not None:
            result["evidence"] = prediction["evidence"]
    else:
        result.update(label=None, score=None, out_of_scope=None, top_k=[])
    result["error"] = error
    if row.extra:
        result["input"] = row.extra
    return result


def _error(exc: FewshotError | None, code: str, message: str) -> dict[str, Any]:
    if exc is None:
        return {"status": None, "code": code, "message": message}
    return {"status": exc.status, "code": exc.code, "message": exc.detail}


async def _classify(job: _Job, rows: list[Row]) -> list[dict[str, Any]]:
    """Result rows for `rows` (all sendable), splitting the batch while the server refuses it for its rows."""
    job.summary.requests += 1
    call = calls.predict_body(job.tenant_id, [row.text or "" for row in rows], job.top_k, job.explain)
    try:
        reply = (await job.client.send(call)).json()
    except InvalidRequest as exc:
        if exc.code not in SPLITTABLE_CODES:
            raise
        if len(rows) == 1:
            return [_result_row(rows[0], None, _error(exc, "", ""))]
        middle = len(rows) // 2
        return [*await _classify(job, rows[:middle]), *await _classify(job, rows[middle:])]
    predictions = reply["predictions"]
    return [_result_row(row, prediction, None) for row, prediction in zip(rows, predictions, strict=True)]


async def _run_batch(job: _Job, batch: list[Row]) -> None:
    unreadable = [row for row in batch if row.problem is not None]
    sendable = [row for row in batch if row.problem is None]
    results = [_result_row(row, None, _error(None, "invalid_row", row.problem or "")) for row in unreadable]
    if sendable:
        results += await _classify(job, sendable)
    job.out.write("".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results))
    job.out.flush()
    failed = sum(result["error"] is not None for result in results)
    job.summary.errors += failed
    job.summary.classified += len(results) - failed
    job.summary.batches += 1
    if job.progress is not None:
        job.progress.update(job.summary.done, job.summary.errors)
    if job.should_stop is not None and job.should_stop(job.summary):
        job.stop.set()


async def _worker(job: _Job, queue: asyncio.Queue[list[Row] | None]) -> None:
    while (batch := await queue.get()) is not None:
        if job.stop.is_set():
            continue  # taken but never sent: the next run classifies it
        try:
            await _run_batch(job, batch)
        except Exception as exc:  # a refusal no smaller batch avoids (unknown tenant, bad key, ...)
            job.failure = job.failure or exc
            job.stop.set()


def _batches(rows: Iterable[Row], done: set[int], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        if row.index in done:
            continue
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def classify_file(
    client: AsyncClient,
    tenant_id: str,
    input_path: str | Path,
    out_path: str | Path,
    *,
    batch_size: int = 32,
    concurrency: int = 4,
    top_k: int | None = 3,
    explain: int = 0,
    keep_columns: bool = True,
    progress: bool | ProgressBar = False,
    should_stop: Callable[[Summary], bool] | None = None,
    stop: asyncio.Event | None = None,
) -> Summary:
    """Classify every row of `input_path` not yet in `out_path` and append the results there (`explain`: each
    row's evidence, see /predict). `should_stop`
    (called after each batch) or setting `stop` ends the run early: batches in flight are finished and written,
    no new one is sent. A refusal that no smaller batch avoids (e.g. 404 `unknown_tenant`) stops the run and is
    raised after the batches in flight are written."""
    if batch_size < 1 or concurrency < 1:
        raise ValueError("batch_size and concurrency must be at least 1")
    source, out = Path(input_path), Path(out_path)
    done = finished_rows(out)
    summary = Summary(total=count_rows(source))
    summary.skipped = len(done)
    bar = progress if isinstance(progress, ProgressBar) else None
    if progress is True:
        bar = ProgressBar(summary.total, start=summary.skipped)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as handle:
        job = _Job(client, tenant_id, top_k, explain, handle, summary, bar, should_stop, stop or asyncio.Event())
        queue: asyncio.Queue[list[Row] | None] = asyncio.Queue(maxsize=concurrency)
        workers = [asyncio.create_task(_worker(job, queue)) for _ in range(concurrency)]
        try:
            for batch in _batches(read_rows(source, keep_columns), done, batch_size):
                if job.stop.is_set():
                    break
                await queue.put(batch)
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
    summary.stopped = job.stop.is_set() and job.failure is None and summary.done < summary.total
    if bar is not None:
        bar.update(summary.done, summary.errors, final=True)
    if job.failure is not None:
        raise job.failure
    return summary
