"""Multi-label tenants: accuracy against both anchors, adaptation speed and per-text predict cost.

    .venv/bin/fewshot evaluate --task multi_label --name multilabel   # accuracy, 5 seeds
    .venv/bin/python -m bench.multilabel_setfit --shots 8 --seeds 0                        # SetFit anchor
    .venv/bin/python -m bench.multilabel                              # this: speed + table

Speed, measured here on the served code path with the shipped checkpoint, two intra-op threads, memory store:
`/adapt` of a GoEmotions multi-label tenant (28 labels, K = 8 from train, seed 0) through
`AdaptationService.adapt` (embedding, inner loop, thresholds, store), median of `--repeats` runs with an empty
embedding cache; `/predict` of one text and of 32 texts through `PredictionService.predict` on that tenant and
on a single-label tenant adapted from the same examples (each example's first label), the two alternating on the
same texts, median cost per text.
Accuracy rows come from `bench/results/eval_multilabel.json` and `bench/results/multilabel_setfit.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from app.bootstrap import load_model
from app.config import Settings
from app.meta.multilabel_data import load_multilabel, sample_k_per_label
from app.ml.embedding_cache import EmbeddingLRU
from app.ml.loading import multi_label_inner_loop
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.store import MemoryStore
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json

ANCHOR = "frozen base + OvR logistic regression (balanced)"


def _examples(data: Path, name: str) -> list[dict[str, Any]]:
    rows = sample_k_per_label(load_multilabel(data / f"{name}.jsonl", ["train"]), 8, 0)
    return [{"text": t, "labels": list(labels)} for t, labels in zip(rows.texts, rows.label_sets, strict=True)]


def speed(data: Path, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(2)
    settings = Settings(_env_file=None)
    encoder, inner, checkpoint = load_model(settings)
    multi = multi_label_inner_loop(None if checkpoint is None else Path(checkpoint))
    store = MemoryStore()
    limits = settings.limits()
    adapt: dict[str, Any] = {}
    for name in ("goemotions_multilabel", "mixsnips"):
        examples = _examples(data, name)
        adapt_s, cpu_s, results = [], [], []
        for _ in range(repeats + 1):  # the first run warms up
            context = TierContext(encoder, inner, limits, multi_inner=multi, embeddings=EmbeddingLRU(0))
            service = AdaptationService(context, store)
            started, cpu_started = time.perf_counter(), time.process_time()
            results.append(service.adapt(name, examples, task="multi_label"))
            adapt_s.append(time.perf_counter() - started)
            cpu_s.append(time.process_time() - cpu_started)
        adapt[name] = {
            "labels": len(results[-1].labels),
            "examples": len(examples),
            "median_s": round(statistics.median(adapt_s[1:]), 3),
            "median_cpu_s": round(statistics.median(cpu_s[1:]), 3),
            "runs_s": [round(s, 3) for s in adapt_s[1:]],
            "timings_ms_last": results[-1].timings_ms,
        }
    examples = _examples(data, "goemotions_multilabel")
    service.adapt("multi", examples, task="multi_label")
    service.adapt("single", [{"text": e["text"], "label": e["labels"][0]} for e in examples])
    prediction = PredictionService(context, store, HeadCache(16), service)
    queries = load_multilabel(data / "goemotions_multilabel.jsonl", ["val"]).texts[:32]
    per_text: dict[str, dict[str, float]] = {}
    for n in (1, 32):
        times: dict[str, list[float]] = {"multi": [], "single": []}
        for i in range(max(40, repeats * 8)):  # the tenants alternate on the same texts: equal encoder warmth
            texts = queries[:n] if n > 1 else [queries[i % len(queries)]]
            for tenant in ("multi", "single") if i % 2 else ("single", "multi"):
                started = time.perf_counter()
                prediction.predict(tenant, texts, top_k=3)
                times[tenant].append(time.perf_counter() - started)
        for tenant, values in times.items():
            per_text.setdefault(tenant, {})[f"{n}_text_ms"] = round(1000 * statistics.median(values[4:]) / n, 3)
    return {
        "adapt": adapt,
        "predict_ms_per_text": per_text,
        "predict_ratio": {
            k: round(per_text["multi"][k] / per_text["single"][k], 3) for k in ("1_text_ms", "32_text_ms")
        },
        "threads": torch.get_num_threads(),
        "checkpoint": checkpoint,
    }


def accuracy_rows(eval_path: Path, setfit_path: Path) -> tuple[list[list[str]], dict[str, Any]]:
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    evaluation = json.loads(eval_path.read_text()) if eval_path.exists() else {"sets": {}}
    setfit = json.loads(setfit_path.read_text()) if setfit_path.exists() else {"runs": []}
    for name, result in evaluation["sets"].items():
        for method, by_k in result["summary"].items():
            if "K=8" in by_k:
                row = by_k["K=8"]
                rows.append(
                    [
                        name,
                        method,
                        f"{row['micro_f1']:.1f} ± {row['micro_f1_std']:.1f}",
                        f"{row['macro_f1']:.1f}",
                        f"{row['exact_match']:.1f}",
                        "5",
                    ]
                )
                summary.setdefault(name, {})[method] = row
        runs = [r for r in setfit.get("runs", []) if r.get("set") == name and r.get("shots") == 8]
        if runs:
            mean = {m: 100 * statistics.mean(r[m] for r in runs) for m in ("micro_f1", "macro_f1", "exact_match")}
            fit_s = statistics.mean(r["fit_s"] for r in runs)
            fit_cpu_s = statistics.mean(r["fit_cpu_s"] for r in runs)
            rows.append(
                [
                    name,
                    "SetFit one-vs-rest (MiniLM, defaults)",
                    f"{mean['micro_f1']:.1f}",
                    f"{mean['macro_f1']:.1f}",
                    f"{mean['exact_match']:.1f}",
                    str(len(runs)),
                ]
            )
            seeds = [r["seed"] for r in runs]
            summary.setdefault(name, {})["setfit"] = mean | {"fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "seeds": seeds}
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval", type=Path, default=Path("bench/results/eval_multilabel.json"))
    parser.add_argument("--setfit", type=Path, default=Path("bench/results/multilabel_setfit.json"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/multilabel.json"))
    args = parser.parse_args()
    measured = speed(args.data, args.repeats)
    rows, summary = accuracy_rows(args.eval, args.setfit)
    print_table(["set", "method (K = 8)", "micro-F1", "macro-F1", "exact match", "seeds"], rows)
    for name, adapt in measured["adapt"].items():
        print(
            f"/adapt {name}: {adapt['labels']} labels, {adapt['examples']} examples, {adapt['median_s']:.3f} s median "
            f"({adapt['median_cpu_s']:.3f} CPU-s)"
        )
        if "setfit" in summary.get(name, {}):
            setfit = summary[name]["setfit"]
            measured.setdefault("speedup_vs_setfit", {})[name] = {
                "wall": round(setfit["fit_s"] / adapt["median_s"], 1),
                "cpu": round(setfit["fit_cpu_s"] / adapt["median_cpu_s"], 1),
            }
    print(f"predict cost per text, multi / single-label: {measured['predict_ratio']}")
    if "speedup_vs_setfit" in measured:
        print(f"adaptation speed-up over SetFit's fit (wall, CPU-seconds): {measured['speedup_vs_setfit']}")
    write_json(args.out, {"speed": measured, "accuracy_k8": summary, "table": rows})


if __name__ == "__main__":
    main()
