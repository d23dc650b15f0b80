"""What the label-names decision costs /adapt: the service's adapt (real encoder, default checkpoint, in-memory store)
on BANKING77 all-way K-shot support from train, `label_names` off / auto / on, and with code-like label names.

One tenant adapted again and again, its support embeddings warm in the process's embedding cache from a first
untimed adapt, so the times are the fit and the decision, not the encoder. Reports the median of `--repeats` adapts:
wall and CPU time (the process's, all threads: robust on a shared machine) and the `label_names` part of the reply's
timings (wall).

    .venv/bin/python -m bench.label_names_latency --shots 5 10 --data DATA
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Any

from app.bootstrap import load_model
from app.config import Settings
from app.meta.data import load_jsonl
from app.ml.embedder import EncoderEmbedder
from app.ml.embedding_cache import EmbeddingLRU
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.store import MemoryStore
from bench.accuracy_http import coded
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples


def measure(service: AdaptationService, examples: list[dict[str, str]], mode: str, repeats: int) -> dict[str, Any]:
    """Median wall time of `repeats` replace-adapts of one tenant (its embeddings cached by a first, untimed one)."""
    service.adapt("bench", examples, label_names=mode)  # warms the embedding cache
    walls, cpus, names = [], [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        result = service.adapt("bench", examples, label_names=mode)
        walls.append(1000 * (time.perf_counter() - started))
        cpus.append(1000 * (time.process_time() - cpu))
        names.append(result.timings_ms["label_names"])
    choice = result.label_names
    return {
        "adapt_ms_median": statistics.median(walls),
        "adapt_cpu_ms_median": statistics.median(cpus),
        "label_names_ms_median": statistics.median(names),
        "used": choice.used if choice else None,
        "reason": choice.reason if choice else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/label_names_latency.json"))
    args = parser.parse_args()
    settings = Settings()
    model = load_model(settings)
    context = TierContext(
        EncoderEmbedder(model.encoder),
        model.inner,
        settings.limits(),
        oos_rule=settings.oos_rule(),
        embeddings=EmbeddingLRU(100_000),
    )
    service = AdaptationService(context, MemoryStore())
    train = load_jsonl(args.data / "banking77.jsonl", splits=["train"]).by_label
    codes = coded(list(train))
    rows, report = [], []
    for shots in args.shots:
        examples = k_shot_examples(train, shots, random.Random(args.seed))
        renamed = [{"text": e["text"], "label": codes[e["label"]]} for e in examples]
        for names, support in (("words", examples), ("codes", renamed)):
            for mode in ("off", "auto", "on"):
                result = {"shots": shots, "names": names, "mode": mode, **measure(service, support, mode, args.repeats)}
                report.append(result)
                rows.append(
                    (
                        shots,
                        names,
                        mode,
                        f"{result['adapt_ms_median']:.0f}",
                        f"{result['adapt_cpu_ms_median']:.0f}",
                        f"{result['label_names_ms_median']:.0f}",
                        result["used"],
                    )
                )
    print_table(["shots", "label names", "mode", "adapt ms", "adapt cpu ms", "of which names ms", "used"], rows)
    write_json(args.out, {"dataset": "banking77", "checkpoint": model.checkpoint, "results": report})


if __name__ == "__main__":
    main()
