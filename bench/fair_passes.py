"""What bounded, shared encoder passes cost and buy, in process (no HTTP): the numbers behind the pass budget.

1. Encoder texts/s by pass size, for long texts (1,000 characters: truncated to 128 tokens) and short ones: how
   large a pass must be to be efficient, and how long it takes (the wait it imposes on a request behind it).
2. A bulk request (A: 1,000 long texts) through the micro-batcher, whole (unbounded passes, as before fair sharing)
   and in chunks (the serving defaults), alone and with B sending one text every 50 ms: A's time and B's waits.

    .venv/bin/python -m bench.fair_passes --out bench/results/fair_passes.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from app.bootstrap import load_model
from app.config import Settings
from app.ml.batching import MicroBatcher
from app.ml.encoder import SentenceEncoder
from app.ml.threads import ThreadPolicy, one_thread_by_default, own_intra_op_threads
from app.ml.work import Priority, Work, working_for
from bench.common.results import print_table, write_json

WORDS = ["card", "rate", "refund", "fee", "euro", "pin", "atm", "app", "login", "cash"]


def long_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(150))[:1000] for _ in range(n)]


def short_texts(n: int) -> list[str]:
    return [f"where is my card number {i}?" for i in range(n)]


def pass_sizes(encoder: SentenceEncoder, sizes: list[int]) -> list[dict[str, Any]]:
    """Milliseconds per pass and texts/s at each pass size (median of repeats)."""
    rows = []
    for kind, texts in (("long", long_texts(max(sizes), 0)), ("short", short_texts(max(sizes)))):
        encoder.embed(texts[:8])
        for size in sizes:
            batch = texts[:size]
            times = []
            for _ in range(5 if size <= 32 else 3):
                started = time.perf_counter()
                encoder.embed(batch)
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            tokens = sum(map(encoder.token_estimate, batch))
            rows.append({"texts": kind, "pass_texts": size, "estimated_tokens": tokens, "ms": seconds * 1e3})
            rows[-1]["texts_per_s"] = size / seconds
    return rows


def bulk_with_probe(encoder: SentenceEncoder, settings: Settings, chunked: bool, probe: bool) -> dict[str, Any]:
    """A's 1,000 long texts as one bulk request; B's one-text requests every 50 ms meanwhile (`probe`)."""
    batcher = MicroBatcher(
        lambda texts: encoder.embed(texts, batch_size=settings.embed_batch_size),
        max_batch_texts=settings.batch_max_texts if chunked else 1 << 20,
        linger_ms=settings.batch_linger_ms,
        threads=ThreadPolicy.of(settings.torch_threads, batching=True).encoder,
        max_tokens=settings.batch_max_tokens if chunked else None,
        chunk_tokens=settings.batch_chunk_tokens if chunked else None,
        cost=encoder.token_estimate,
    )
    texts, waits, done = long_texts(1000, 1), [], threading.Event()

    def b_probe() -> None:
        while not done.is_set():
            with working_for(Work("B", Priority.INTERACTIVE)):
                started = time.perf_counter()
                batcher.embed(["where is my card?"])
                waits.append((time.perf_counter() - started) * 1e3)
            done.wait(0.05)

    try:
        batcher.embed(texts[:64])  # warm-up
        prober = threading.Thread(target=b_probe) if probe else None
        if prober is not None:
            prober.start()
            time.sleep(0.2)
        with working_for(Work("A", Priority.BULK)):
            started = time.perf_counter()
            batcher.embed(texts)
            a_seconds = time.perf_counter() - started
        done.set()
        if prober is not None:
            prober.join()
    finally:
        batcher.close()
    row: dict[str, Any] = {"passes": "chunks" if chunked else "whole", "b_probing": probe, "a_s": a_seconds}
    if waits:
        row |= {"b_p50_ms": statistics.median(waits), "b_max_ms": max(waits), "b_requests": len(waits)}
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--out", type=Path, default=Path("bench/results/fair_passes.json"))
    args = parser.parse_args(argv)
    settings = Settings(_env_file=None)
    one_thread_by_default()  # as a serving process: only the encoder's thread has a team
    encoder, _, _ = load_model(settings)
    own_intra_op_threads(ThreadPolicy.of(settings.torch_threads, batching=True).encoder)
    sizes = pass_sizes(encoder, args.sizes)
    bulk = [bulk_with_probe(encoder, settings, chunked, probe) for probe in (False, True) for chunked in (False, True)]
    write_json(args.out, {"pass_sizes": sizes, "bulk": bulk})
    print_table(
        ["texts", "pass texts", "est. tokens", "ms", "texts/s"],
        [
            [r["texts"], r["pass_texts"], r["estimated_tokens"], f"{r['ms']:.1f}", f"{r['texts_per_s']:.0f}"]
            for r in sizes
        ],
    )
    print_table(
        ["A's passes", "B probing", "A (s)", "B p50 (ms)", "B max (ms)"],
        [
            [
                r["passes"],
                r["b_probing"],
                f"{r['a_s']:.2f}",
                f"{r.get('b_p50_ms', 0):.0f}",
                f"{r.get('b_max_ms', 0):.0f}",
            ]
            for r in bulk
        ],
    )


if __name__ == "__main__":
    main()
