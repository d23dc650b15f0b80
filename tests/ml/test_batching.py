"""Micro-batching: merged passes give each caller exactly its own rows."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import torch

from app.ml.batching import MicroBatcher
from app.ml.pass_runner import PassRunner
from app.ml.threads import intra_op_threads
from app.ml.work import Priority, Work, WorkCancelled, working_for

TEXTS = [
    "where is my card",
    "a much longer sentence about exchange rates and fees charged on transfers abroad",
    "refund",
    "how do I top up my account with a bank transfer from another bank",
    "hi",
    "my pin is blocked",
]


def test_batched_results_equal_unbatched(tiny_encoder) -> None:
    def embed(texts: list[str]) -> torch.Tensor:
        return tiny_encoder.embed(texts, batch_size=64)

    requests = [TEXTS[i : i + 2] for i in range(0, len(TEXTS), 2)] + [TEXTS[::-1], [TEXTS[0]]]
    expected = [embed(r) for r in requests]
    batcher = MicroBatcher(embed, max_batch_texts=64, max_wait_ms=50)
    try:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            results = list(pool.map(batcher.embed, requests))
    finally:
        batcher.close()
    for got, want in zip(results, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert batcher.batches < len(requests)  # some requests shared a pass
    assert batcher.texts == sum(len(r) for r in requests)


def test_max_batch_texts_is_respected() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def embed(texts: list[str]) -> torch.Tensor:
        gate.wait(5)
        return torch.tensor([[float(len(t))] for t in texts])

    batcher = MicroBatcher(embed, max_batch_texts=4, max_wait_ms=20, on_batch=sizes.append)
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(batcher.embed, ["ab", "abc"]) for _ in range(6)]
            gate.set()
            results = [f.result(timeout=10) for f in futures]
    finally:
        batcher.close()
    assert all(r.squeeze(1).tolist() == [2.0, 3.0] for r in results)
    assert sizes and max(sizes) <= 4 and sum(sizes) == 12


def test_errors_reach_every_caller_and_the_batcher_survives() -> None:
    calls = {"n": 0}

    def embed(texts: list[str]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("encoder failed")
        return torch.zeros(len(texts), 2)

    batcher = MicroBatcher(embed, max_wait_ms=1)
    try:
        with pytest.raises(ValueError, match="encoder failed"):
            batcher.embed(["x"])
        assert batcher.embed(["y", "z"]).shape == (2, 2)
    finally:
        batcher.close()


def test_a_failing_request_fails_alone_and_the_others_of_its_pass_get_their_unbatched_rows(tiny_encoder) -> None:
    """One tenant's bad text in a merged pass: retried request by request, only its own request fails."""
    poison = "this text breaks the encoder"
    passes: list[list[str]] = []

    def embed(texts: list[str]) -> torch.Tensor:
        passes.append(list(texts))
        if poison in texts:
            raise ValueError("encoder failed on a marked text")
        return tiny_encoder.embed(texts, batch_size=64)

    requests = [["where is my card", "refund"], [poison], ["hi", "my pin is blocked"]]
    # the pass closes exactly when all three requests wait (5 texts), so they share it
    batcher = MicroBatcher(embed, max_batch_texts=5, max_wait_ms=30_000)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(batcher.embed, texts) for texts in requests]
            outcomes = [future.exception(timeout=30) or future.result() for future in futures]
    finally:
        batcher.close()
    assert sorted(passes[0]) == sorted(text for texts in requests for text in texts)  # one merged pass first
    assert isinstance(outcomes[1], ValueError)
    for i in (0, 2):
        assert torch.equal(outcomes[i], tiny_encoder.embed(requests[i], batch_size=64))
    assert sorted(map(sorted, passes[1:])) == sorted(map(sorted, requests))  # then each request on its own


def test_the_encoder_thread_keeps_its_own_intra_op_thread_count() -> None:
    """Request threads narrow their own teams (per-tenant math on one thread); encoder passes keep theirs."""
    seen: list[int] = []

    def embed(texts: list[str]) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return torch.zeros(len(texts), 1)

    batcher = MicroBatcher(embed, threads=3)
    try:
        with intra_op_threads(1):
            assert torch.get_num_threads() == 1
            batcher.embed(["a"])
        batcher.embed(["b"])
    finally:
        batcher.close()
    assert seen == [3, 3]


def test_intra_op_threads_are_restored() -> None:
    before = torch.get_num_threads()
    with intra_op_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with intra_op_threads(None):
        assert torch.get_num_threads() == before


def test_without_a_wait_a_lone_request_runs_at_once_and_later_ones_share_the_next_pass() -> None:
    sizes: list[int] = []
    first_pass_running, release = threading.Event(), threading.Event()

    def embed(texts: list[str]) -> torch.Tensor:
        if not sizes:
            first_pass_running.set()
            release.wait(5)
        sizes.append(len(texts))
        return torch.zeros(len(texts), 1)

    batcher = MicroBatcher(embed)  # max_wait_ms defaults to 0
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            first = pool.submit(batcher.embed, ["a"])
            assert first_pass_running.wait(5)  # started without waiting for company
            later = [pool.submit(batcher.embed, [t]) for t in ("b", "c", "d")]
            while sum(map(len, batcher.queued())) < 3:
                threading.Event().wait(0.001)
            release.set()
            for future in [first, *later]:
                future.result(timeout=10)
    finally:
        batcher.close()
    assert sizes == [1, 3]


@pytest.mark.parametrize("batching", [True, False])
def test_request_threads_run_per_tenant_math_on_one_thread_only_when_a_batcher_encodes(
    tiny_encoder, batching: bool
) -> None:
    from app.bootstrap import build_runtime
    from app.config import Settings
    from app.ml.learner import InnerLoopParams

    settings = Settings(store="memory", batching_enabled=batching, _env_file=None)
    runtime = build_runtime(settings, (tiny_encoder, InnerLoopParams.constant(5, 0.04, 10.0), None))
    try:
        expected = 1 if batching else None  # unbatched, request threads run the encoder too
        assert (
            runtime.tiers.default.adaptation.context.math_threads
            == runtime.tiers.default.prediction.context.math_threads
            == expected
        )
        result = runtime.tiers.default.adaptation.adapt(
            "t", [{"text": t, "label": str(i % 2)} for i, t in enumerate(TEXTS)]
        )
        assert runtime.tiers.default.prediction.predict("t", ["refund"]).version == result.version
    finally:
        runtime.close()


def test_awaiting_callers_share_a_pass_and_get_their_own_rows(tiny_encoder) -> None:
    def embed(texts: list[str]) -> torch.Tensor:
        return tiny_encoder.embed(texts, batch_size=64)

    requests = [TEXTS[:2], TEXTS[2:5], [TEXTS[5]]]
    batcher = MicroBatcher(embed, max_batch_texts=len(TEXTS), max_wait_ms=10_000)  # full at 6 texts: no wait

    async def all_at_once() -> list[torch.Tensor]:
        return await asyncio.gather(*(batcher.embed_async(r) for r in requests))

    try:
        results = asyncio.run(all_at_once())
    finally:
        batcher.close()
    for got, request in zip(results, requests, strict=True):
        torch.testing.assert_close(got, embed(request), atol=1e-5, rtol=1e-4)
    assert batcher.batches == 1  # three awaits, one event-loop thread, one merged pass


def test_a_cancelled_await_withdraws_its_texts_and_the_batcher_keeps_serving() -> None:
    seen: list[list[str]] = []
    running, release = threading.Event(), threading.Event()

    def embed(texts: list[str]) -> torch.Tensor:
        seen.append(list(texts))
        running.set()
        release.wait(5)
        return torch.zeros(len(texts), 2)

    batcher = MicroBatcher(embed, max_wait_ms=0)

    async def scenario() -> torch.Tensor:
        first = asyncio.ensure_future(batcher.embed_async(["first"]))
        await asyncio.get_running_loop().run_in_executor(None, running.wait, 5)  # the pass for "first" runs
        gone = asyncio.ensure_future(batcher.embed_async(["abandoned"]))
        await asyncio.sleep(0)  # queued behind the running pass
        gone.cancel()
        await asyncio.sleep(0)  # the cancellation reaches the queued request
        release.set()
        await first
        return await batcher.embed_async(["later"])

    try:
        later = asyncio.run(asyncio.wait_for(scenario(), 10))
    finally:
        batcher.close()
    assert later.shape == (1, 2)
    assert seen == [["first"], ["later"]]  # "abandoned" was never encoded


def test_under_load_a_pass_lingers_for_more_requests() -> None:
    passes: list[list[str]] = []
    gates = [threading.Event(), threading.Event()]
    started = [threading.Event(), threading.Event()]

    def embed(texts: list[str]) -> torch.Tensor:
        passes.append(list(texts))
        if len(passes) <= 2:  # the first two passes wait for the test
            started[len(passes) - 1].set()
            gates[len(passes) - 1].wait(5)
        return torch.zeros(len(texts), 1)

    batcher = MicroBatcher(embed, max_batch_texts=2, max_wait_ms=0, linger_ms=10_000)  # full at 2: no 10 s wait
    try:
        with ThreadPoolExecutor(max_workers=5) as pool:
            a = pool.submit(batcher.embed, ["a"])
            assert started[0].wait(5)
            b, c = pool.submit(batcher.embed, ["b"]), pool.submit(batcher.embed, ["c"])
            _until(lambda: len(batcher.queued()) == 2)  # both queued behind pass 1
            gates[0].set()  # pass 2 takes b and c at once: the last pass carried one request, so no lingering
            assert started[1].wait(5)
            d = pool.submit(batcher.embed, ["d"])
            _until(lambda: len(batcher.queued()) == 1)
            gates[1].set()  # d waits as pass 2 ends; the last pass carried two requests: it lingers for more
            b.result(timeout=5)
            e = pool.submit(batcher.embed, ["e"])
            for future in (a, c, d, e):
                future.result(timeout=5)
    finally:
        batcher.close()
    assert passes == [["a"], ["b", "c"], ["d", "e"]]


def test_lingering_ends_once_the_arrivals_pause() -> None:
    """Under load a pass waits for the callers the last pass answered, not for `linger_ms`: once requests have
    arrived since the last pass and then none for `QUIET_S`, it starts."""
    passes: list[list[str]] = []
    first_running, release = threading.Event(), threading.Event()

    def embed(texts: list[str]) -> torch.Tensor:
        passes.append(list(texts))
        if len(passes) == 1:
            first_running.set()
            release.wait(5)
        return torch.zeros(len(texts), 1)

    batcher = MicroBatcher(embed, max_batch_texts=100, max_wait_ms=0, linger_ms=60_000)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            a = pool.submit(batcher.embed, ["a"])
            assert first_running.wait(5)
            b, c = pool.submit(batcher.embed, ["b"]), pool.submit(batcher.embed, ["c"])
            _until(lambda: len(batcher.queued()) == 2)
            release.set()  # pass 2 takes b and c: from now on the batcher is under load and lingers
            for future in (a, b, c):
                future.result(timeout=5)
            assert batcher._submit(["d"]).result(timeout=5).shape == (1, 1)  # a minute of lingering would time out
    finally:
        batcher.close()
    assert passes == [["a"], ["b", "c"], ["d"]]


def test_a_lone_request_never_lingers() -> None:
    batcher = MicroBatcher(lambda texts: torch.zeros(len(texts), 1), max_wait_ms=0, linger_ms=60_000)
    try:
        for text in ("one", "after", "another"):
            assert batcher._submit([text]).result(timeout=5).shape == (1, 1)  # a minute of lingering would time out
    finally:
        batcher.close()


def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll a condition another thread makes true (the batcher's queue has no event to wait on)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_a_batching_server_leaves_intra_op_teams_to_its_batchers(tiny_encoder, monkeypatch) -> None:
    """The thread that builds the runtime loads and answers on one intra-op thread, as does every thread started
    afterwards; only the batcher's passes run on `torch_threads` (more OpenMP threads than cores make libgomp
    sleep at every barrier: app/ml/threads.py)."""
    from app.bootstrap import build_runtime
    from app.config import Settings
    from app.ml.learner import InnerLoopParams

    passes: list[int] = []
    embed = tiny_encoder.embed
    monkeypatch.setattr(
        tiny_encoder, "embed", lambda texts, **kw: passes.append(torch.get_num_threads()) or embed(texts, **kw)
    )
    seen: dict[str, int] = {}

    def serve() -> None:  # a thread of its own: the test's thread keeps its settings
        settings = Settings(store="memory", batching_enabled=True, torch_threads=2, _env_file=None)
        runtime = build_runtime(settings, (tiny_encoder, InnerLoopParams.constant(5, 0.04, 10.0), None))
        try:
            seen["builder"] = torch.get_num_threads()
            later = threading.Thread(target=lambda: seen.setdefault("started later", torch.get_num_threads()))
            later.start()
            later.join()
            runtime.tiers.default.adaptation.adapt("t", [{"text": t, "label": str(i % 2)} for i, t in enumerate(TEXTS)])
        finally:
            runtime.close()

    builder = threading.Thread(target=serve)
    builder.start()
    builder.join()
    assert seen == {"builder": 1, "started later": 1}
    assert passes and set(passes) == {2}


def test_batchers_sharing_a_runner_run_their_passes_on_its_thread_one_at_a_time() -> None:
    """Two encoders' batchers, one runner: every pass on the runner's thread with its thread count; while one
    batcher's pass runs, the other's waits; a failing pass still fails only its own request."""
    runs: list[tuple[str, int, int]] = []
    first_running, release = threading.Event(), threading.Event()

    def embed_with(name: str, dim: int) -> Callable[[list[str]], torch.Tensor]:
        def embed(texts: list[str]) -> torch.Tensor:
            runs.append((name, threading.get_ident(), torch.get_num_threads()))
            if texts == ["first"]:
                first_running.set()
                release.wait(5)
            if "bad" in texts:
                raise ValueError("bad text")
            return torch.full((len(texts), dim), float(dim))

        return embed

    runner = PassRunner(threads=2)
    small = MicroBatcher(embed_with("small", 2), runner=runner)
    large = MicroBatcher(embed_with("large", 3), runner=runner)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            first = pool.submit(small.embed, ["first"])
            assert first_running.wait(5)
            second = pool.submit(large.embed, ["second"])
            _until(lambda: not large.queued() and not runner._work.empty())  # handed to the runner, queued
            assert [name for name, _, _ in runs] == ["small"]  # the large pass waits for the small one
            release.set()
            assert first.result(timeout=5).shape == (1, 2) and second.result(timeout=5).shape == (1, 3)
            with pytest.raises(ValueError, match="bad text"):
                small.embed(["bad"])
            assert large.embed(["after"]).shape == (1, 3)
    finally:
        small.close()
        large.close()
        runner.close()
    assert {ident for _, ident, _ in runs} == {runner._thread.ident} and {count for _, _, count in runs} == {2}


def test_a_server_with_several_encoders_runs_all_their_passes_on_one_runner(tiny_encoder) -> None:
    from app.bootstrap import build_runtime
    from app.config import Settings
    from app.ml.learner import InnerLoopParams
    from tests.tiny_encoder import build_tiny_mpnet, packaged_tokenizer

    inner = InnerLoopParams.constant(3, 0.04, 10.0)
    settings = Settings(store="memory", encoders="minilm,mpnet", torch_threads=2, _env_file=None)
    models = {"minilm": (tiny_encoder, inner, None), "mpnet": (build_tiny_mpnet(packaged_tokenizer()), inner, None)}
    threads: set[int] = set()
    for encoder, _, _ in models.values():
        original = encoder.embed
        encoder.embed = lambda texts, _original=original, **kw: (
            threads.add(threading.get_ident()) or _original(texts, **kw)
        )
    runtime = build_runtime(settings, tier_models=models)
    try:
        assert runtime.pass_runner is not None and len(runtime.batchers) == 2
        examples = [{"text": t, "label": str(i % 2)} for i, t in enumerate(TEXTS)]
        for tier in ("minilm", "mpnet"):
            runtime.tiers.for_adapt(f"t-{tier}", "replace", tier).adaptation.adapt(f"t-{tier}", examples)
        assert threads == {runtime.pass_runner._thread.ident}
    finally:
        runtime.close()
        for encoder, _, _ in models.values():
            del encoder.embed


def _held_batcher(passes: list[list[str]], **options: object) -> tuple[MicroBatcher, threading.Event, threading.Event]:
    """A batcher over a fake encoder (a text's row is its length) whose first pass waits for `release`."""
    running, release = threading.Event(), threading.Event()

    def embed(texts: list[str]) -> torch.Tensor:
        passes.append(list(texts))
        if len(passes) == 1:
            running.set()
            release.wait(5)
        return torch.tensor([[float(len(t))] for t in texts])

    return MicroBatcher(embed, cost=len, **options), running, release  # type: ignore[arg-type]


def _submit_as(batcher: MicroBatcher, owner: str, priority: Priority, texts: list[str]) -> Future:
    with working_for(Work(owner, priority)):
        return batcher._submit(texts)


def test_a_large_request_is_cut_into_bounded_passes_and_a_short_one_of_another_tenant_joins_the_next() -> None:
    passes: list[list[str]] = []
    batcher, running, release = _held_batcher(passes, max_batch_texts=64, max_tokens=8, chunk_tokens=4)
    big = ["aa"] * 12  # 24 tokens: six chunks of two texts
    try:
        first = _submit_as(batcher, "b", Priority.INTERACTIVE, ["x"])
        assert running.wait(5)
        bulk = _submit_as(batcher, "a", Priority.BULK, big)
        short = _submit_as(batcher, "b", Priority.INTERACTIVE, ["wh"])
        release.set()
        assert bulk.result(timeout=5).squeeze(1).tolist() == [2.0] * 12  # reassembled in order
        assert short.result(timeout=5).tolist() == [[2.0]] and first.result(timeout=5).tolist() == [[1.0]]
    finally:
        batcher.close()
    assert passes[1] == ["aa", "aa", "wh"]  # one bulk chunk, then the interactive text; the next chunk is over 8
    assert all(sum(map(len, texts)) <= 8 for texts in passes[1:])
    assert sum(len(texts) for texts in passes) == 14


def test_owners_of_one_priority_take_turns_chunk_by_chunk() -> None:
    passes: list[list[str]] = []
    batcher, running, release = _held_batcher(passes, max_batch_texts=64, max_tokens=4, chunk_tokens=2)
    try:
        first = _submit_as(batcher, "z", Priority.INTERACTIVE, ["x"])
        assert running.wait(5)
        greedy = _submit_as(batcher, "a", Priority.INTERACTIVE, ["a1", "a2", "a3"])  # three chunks
        polite = _submit_as(batcher, "b", Priority.INTERACTIVE, ["b1"])
        release.set()
        for future in (first, greedy, polite):
            future.result(timeout=5)
    finally:
        batcher.close()
    assert passes[1:] == [["a1", "b1"], ["a2", "a3"]]


def test_bulk_work_gets_a_chunk_in_every_pass_while_interactive_work_fills_the_rest() -> None:
    passes: list[list[str]] = []
    batcher, running, release = _held_batcher(passes, max_batch_texts=3, chunk_tokens=1)
    try:
        first = _submit_as(batcher, "z", Priority.INTERACTIVE, ["x"])
        assert running.wait(5)
        bulk = _submit_as(batcher, "a", Priority.BULK, ["A", "B"])
        asks = [_submit_as(batcher, f"t{i}", Priority.INTERACTIVE, [str(i)]) for i in range(4)]
        release.set()
        for future in (first, bulk, *asks):
            future.result(timeout=5)
    finally:
        batcher.close()
    assert passes[1:] == [["A", "0", "1"], ["B", "2", "3"]]


def test_cancelled_work_loses_the_chunks_that_have_not_run() -> None:
    passes: list[list[str]] = []
    batcher, running, release = _held_batcher(passes, max_batch_texts=2, chunk_tokens=2)
    work = Work("a", Priority.BULK)
    try:
        with working_for(work):
            doomed = batcher._submit(["a1", "a2", "a3", "a4", "a5", "a6"])
        assert running.wait(5)  # its first two chunks are in the pass that is running
        work.cancel()
        release.set()
        with pytest.raises(WorkCancelled):
            doomed.result(timeout=5)
        assert batcher.embed(["later"]).tolist() == [[5.0]]
    finally:
        batcher.close()
    assert passes == [["a1", "a2"], ["later"]]  # a pass of two texts ran; a3 to a6 never did


def test_split_requests_get_the_rows_of_an_unsplit_pass(tiny_encoder) -> None:
    def embed(texts: list[str]) -> torch.Tensor:
        return tiny_encoder.embed(texts, batch_size=64)

    batcher = MicroBatcher(embed, max_batch_texts=64, max_tokens=40, chunk_tokens=20, cost=len)
    texts = TEXTS * 3
    try:
        with working_for(Work("t", Priority.BULK)):
            got = batcher.embed(texts)
    finally:
        batcher.close()
    assert batcher.batches > 3
    torch.testing.assert_close(got, embed(texts), atol=1e-5, rtol=1e-4)


def test_a_bulk_chunk_is_at_most_half_a_pass_so_an_interactive_text_joins_the_next_one() -> None:
    passes: list[list[str]] = []
    batcher, running, release = _held_batcher(passes, max_batch_texts=4)  # passes bounded by text count alone
    try:
        first = _submit_as(batcher, "z", Priority.INTERACTIVE, ["x"])
        assert running.wait(5)
        bulk = _submit_as(batcher, "a", Priority.BULK, [f"a{i}" for i in range(8)])
        short = _submit_as(batcher, "b", Priority.INTERACTIVE, ["b"])
        release.set()
        for future in (first, bulk, short):
            future.result(timeout=5)
    finally:
        batcher.close()
    assert passes[1] == ["a0", "a1", "b"]
