"""CPU speed-ups of the encoder, each measured for speed and for BANKING77 accuracy (through the /adapt
code path: AdaptationService.fit on 77-way 5-shot support from train, the whole test split scored):

- torch intra-op threads (1 vs the default),
- int8 dynamic quantization (`FEWSHOT_QUANTIZE_INT8`),
- `torch.compile(dynamic=True)` of the transformer,
- bfloat16 weights and activations (`FEWSHOT_ENCODER_PRECISION`; native on AVX512-BF16 / AMX CPUs),
- bfloat16 embedded through a TorchScript trace (`FEWSHOT_TRACE_ENCODER`, the served default: "bf16+trace").

Every variant starts from the eager float32 encoder ("float32" is the reference row); only "+trace" is traced.

A variant is worth keeping only if it is faster and moves accuracy by less than 0.2 points.

    .venv/bin/python -m bench.cpu_speedups
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from app.bootstrap import load_model
from app.config import Settings
from app.meta.data import load_jsonl
from app.ml.encoder import SentenceEncoder, quantize_int8
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.validation import validate_support
from app.store import MemoryStore
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples


def latency_ms(encoder: SentenceEncoder, text: str, reps: int = 40) -> float:
    for _ in range(5):
        encoder.embed([text])
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        encoder.embed([text])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def throughput(encoder: SentenceEncoder, texts: list[str]) -> float:
    encoder.embed(texts[:64], batch_size=64)
    started = time.perf_counter()
    encoder.embed(texts, batch_size=64)
    return len(texts) / (time.perf_counter() - started)


def accuracy(encoder: SentenceEncoder, inner, data: Path, seeds: int) -> float:
    settings = Settings()
    service = AdaptationService(TierContext(encoder, inner, settings.limits()), MemoryStore())
    train = load_jsonl(data / "banking77.jsonl", ["train"])
    test = load_jsonl(data / "banking77.jsonl", ["test"]).pairs()
    test_emb = encoder.embed([t for t, _ in test], batch_size=128)
    scores = []
    for seed in range(seeds):
        rng = random.Random(seed)
        examples = k_shot_examples(train.by_label, 5, rng)
        head, _, _ = service.fit(validate_support(examples, None, service.context.limits), inner.steps)
        predicted = head.probabilities(test_emb).argmax(-1).tolist()
        scores.append(sum(head.labels[p] == lab for p, (_, lab) in zip(predicted, test, strict=True)) / len(test))
    return statistics.mean(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument(
        "--variants", nargs="+", default=["float32", "bf16", "bf16+trace", "threads=1", "int8", "compile"]
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/cpu_speedups.json"))
    args = parser.parse_args()
    queries = [t for t, _ in load_jsonl(args.data / "banking77.jsonl", ["test"]).pairs()]
    sample = random.Random(0).sample(queries, args.texts)
    default_threads = torch.get_num_threads()
    rows = {}
    for variant in args.variants:
        torch.set_num_threads(1 if variant == "threads=1" else default_threads)
        precision = "bfloat16" if variant.startswith("bf16") else "float32"
        encoder, inner, _ = load_model(Settings(encoder_precision=precision, trace_encoder=variant.endswith("+trace")))
        if variant == "int8":
            quantize_int8(encoder)
        if variant == "compile":
            encoder.transformer = torch.compile(encoder.transformer, dynamic=True)
            encoder.embed(sample[:64])  # compile outside the timings
        rows[variant] = {
            "one_text_ms": latency_ms(encoder, "where is my new card?"),
            "texts_per_s": throughput(encoder, sample),
            "accuracy": accuracy(encoder, inner, args.data, args.seeds),
        }
        print(variant, json.dumps(rows[variant]), flush=True)
    base = rows.get("float32")
    print()
    print_table(
        ["variant", "1 text (ms)", "texts/s (batches of 64)", "BANKING77 77-way 5-shot", "Δ accuracy"],
        [
            (
                name,
                f"{row['one_text_ms']:.1f}",
                f"{row['texts_per_s']:.0f}",
                f"{100 * row['accuracy']:.2f} %",
                f"{100 * (row['accuracy'] - base['accuracy']):+.2f}" if base else "—",
            )
            for name, row in rows.items()
        ],
    )
    write_json(args.out, {"machine": platform.platform(), "default_threads": default_threads, "variants": rows})


if __name__ == "__main__":
    main()
