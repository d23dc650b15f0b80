"""Batch classification against a real server: every row written once, error rows for bad rows, an interrupted
run resumed with no row classified twice and the same result as an uninterrupted run, the two CLIs."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from fewshot_client import AsyncClient, NotFound
from fewshot_client.batch import Summary, classify_file
from fewshot_client.cli import main as client_main
from fewshot_client.rows import finished_rows

from app.cli import main as fewshot_main
from tests.client.conftest import ADMIN_KEY, SUPPORT
from tests.web.conftest import CARDS, FX, REFUND

N_ROWS = 300
EMPTY_ROW, MISSING_ROW = 37, 150
LABEL_OF = {
    text: label
    for label, texts in (("card_arrival", CARDS), ("exchange_rate", FX), ("refund", REFUND))
    for text in texts
}
POOL = sorted(LABEL_OF)


class CountingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, counting each text that a /predict answered 200 for (i.e. classified)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.classified: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/predict":
            await response.aread()
            if response.status_code == 200:
                self.classified.update(json.loads(request.content)["texts"])
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _text(index: int) -> str:
    return f"{POOL[index % len(POOL)]} (ticket {index})"


def write_jsonl(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(N_ROWS):
            record: dict[str, Any] = {"id": f"r{index}", "text": _text(index), "queue": index % 3}
            if index == EMPTY_ROW:
                record["text"] = "   "
            if index == MISSING_ROW:
                del record["text"]
            handle.write(json.dumps(record) + "\n")
            if index == 10:
                handle.write("\n")  # blank lines are not rows
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(server: str, tenant: str, source: Path, out: Path, **options: Any) -> tuple[Summary, CountingTransport]:
    transport = CountingTransport()

    async def go() -> Summary:
        async with AsyncClient(server, api_key=ADMIN_KEY, transport=transport) as client:
            return await classify_file(client, tenant, source, out, **options)

    return asyncio.run(go()), transport


@pytest.fixture(scope="module")
def batch_tenant(server: str) -> str:
    tenant = "batch-tenant"
    httpx.post(
        f"{server}/adapt",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"tenant_id": tenant, "examples": SUPPORT},
        timeout=60,
    ).raise_for_status()
    return tenant


def _by_row(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    counts = Counter(row["row"] for row in rows)
    assert not [row for row, n in counts.items() if n > 1], "a row was written twice"
    return {row["row"]: row for row in rows}


def test_every_row_once_with_error_rows_for_bad_rows(server: str, batch_tenant: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    summary, transport = run(server, batch_tenant, write_jsonl(tmp_path / "in.jsonl"), out, top_k=2)
    rows = _by_row(read_output(out))
    assert sorted(rows) == list(range(N_ROWS))
    assert summary.total == N_ROWS and summary.errors == 2 and summary.classified == N_ROWS - 2
    assert rows[EMPTY_ROW]["error"]["code"] == "empty_text" and rows[EMPTY_ROW]["error"]["status"] == 422
    assert rows[MISSING_ROW]["error"]["code"] == "invalid_row" and rows[MISSING_ROW]["id"] == f"r{MISSING_ROW}"
    good = [row for index, row in rows.items() if index not in (EMPTY_ROW, MISSING_ROW)]
    assert all(
        row["error"] is None and len(row["top_k"]) == 2 and row["input"] == {"queue": row["row"] % 3} for row in good
    )
    wrong = [row for row in good if row["top_k"][0]["label"] != LABEL_OF[POOL[row["row"] % len(POOL)]]]
    assert len(wrong) <= len(good) // 20
    assert max(transport.classified.values()) == 1  # the refused batch was split; nothing was classified twice


def test_interrupted_at_half_and_resumed(server: str, batch_tenant: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl")
    whole, _ = run(server, batch_tenant, source, tmp_path / "whole.jsonl", batch_size=16, concurrency=4)

    out = tmp_path / "resumed.jsonl"
    first, first_transport = run(
        server, batch_tenant, source, out, batch_size=16, concurrency=4, should_stop=lambda s: s.done >= N_ROWS // 2
    )
    assert first.stopped and N_ROWS // 2 <= first.done < N_ROWS
    with out.open("a", encoding="utf-8") as handle:
        handle.write('{"row": 299, "id": "cut sh')  # a kill in the middle of a write
    second, second_transport = run(server, batch_tenant, source, out, batch_size=16, concurrency=4)
    assert not second.stopped and second.skipped == first.done and second.done == N_ROWS

    twice = (first_transport.classified + second_transport.classified).most_common(1)[0][1]
    assert twice == 1, "a row was classified twice"
    resumed, uninterrupted = _by_row(read_output(out)), _by_row(read_output(tmp_path / "whole.jsonl"))
    assert sorted(resumed) == sorted(uninterrupted) == list(range(N_ROWS))
    for index, row in uninterrupted.items():
        other = resumed[index]
        assert (other["label"], other["error"], other["id"]) == (row["label"], row["error"], row["id"])
        if row["score"] is not None:
            assert other["score"] == pytest.approx(row["score"], abs=1e-4)
    assert whole.classified == first.classified + second.classified


def test_batches_larger_than_the_server_takes_are_split(server: str, batch_tenant: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    summary, _ = run(server, batch_tenant, write_jsonl(tmp_path / "in.jsonl"), out, batch_size=100)  # max_texts 64
    assert summary.classified == N_ROWS - 2 and len(_by_row(read_output(out))) == N_ROWS


def test_an_unknown_tenant_stops_the_run_typed(server: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(NotFound) as missing:
        run(server, "no-such-tenant", write_jsonl(tmp_path / "in.jsonl"), out)
    assert missing.value.code == "unknown_tenant" and read_output(out) == []


def test_a_cut_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"row": 0}\n{"row": 2}\n{"row": 1, "lab', encoding="utf-8")
    assert finished_rows(out) == {0, 2}
    assert out.read_text(encoding="utf-8") == '{"row": 0}\n{"row": 2}\n'


def _write_csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "channel"])
        for index in range(40):
            writer.writerow([f"c{index}", _text(index) if index != 5 else "", 'mail, "quoted"'])
    return path


@pytest.mark.parametrize("command", ["fewshot", "fewshot-client"])
def test_classify_commands(
    command: str, server: str, batch_tenant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = _write_csv(tmp_path / "in.csv"), tmp_path / "out.jsonl"
    argv = ["classify", "--tenant", batch_tenant, str(source), "--out", str(out), "--batch", "8", "--top-k", "1"]
    argv += ["--url", server, "--api-key", ADMIN_KEY]
    entry = fewshot_main if command == "fewshot" else client_main
    assert entry(argv) == 0
    rows = _by_row(read_output(out))
    assert len(rows) == 40 and rows[5]["error"]["code"] == "empty_text"
    assert rows[0]["id"] == "c0" and rows[0]["input"] == {"channel": 'mail, "quoted"'} and len(rows[0]["top_k"]) == 1
    err = capsys.readouterr().err
    assert "40/40 rows" in err and "rows/s" in err and "ETA" in err and "39 classified, 1 error rows" in err
    assert entry(argv) == 0 and len(read_output(out)) == 40  # a finished file: nothing left to do
    assert "0 classified, 0 error rows, 40 already done" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_killed_command_resumes_writing_every_row_once(
    signum: int, server: str, batch_tenant: str, tmp_path: Path
) -> None:
    source, out = write_jsonl(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "fewshot_client.cli", "classify", "--tenant", batch_tenant, str(source)]
    command += ["--out", str(out), "--batch", "2", "--concurrency", "2", "--url", server, "--api-key", ADMIN_KEY]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    first = read_output(out) if signum == signal.SIGINT else []
    if signum == signal.SIGINT:
        assert process.returncode == 3 and "stopped early" in err, err
        assert 0 < len(first) < N_ROWS
    else:
        assert process.returncode == -signal.SIGKILL
    resumed = subprocess.run([*command, "--quiet"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = _by_row(read_output(out))
    assert sorted(rows) == list(range(N_ROWS))
    if first:
        assert f"{len(first)} already done" in resumed.stderr
