"""Tenant-model quality through the /adapt code path (AdaptationService.fit + TenantHead):

1. out-of-scope detection on CLINC150 (150-way K-shot support from train; test + oos_test queries),
2. calibration (expected calibration error) on BANKING77 all-way 5-shot,
3. label descriptions as extra examples on BANKING77 all-way 1-shot.

    .venv/bin/python -m bench.tenant_quality --data ../shared/data        # loads the default checkpoint
    FEWSHOT_CHECKPOINT=none .venv/bin/python -m bench.tenant_quality      # base encoder
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
from pathlib import Path

import torch

from app.config import Settings
from app.meta.data import LabeledSet, load_jsonl
from app.meta.embed_cache import embed_cached
from app.meta.evaluate import summarise
from app.ml.head import TenantHead
from app.services.adaptation import AdaptationService, OosRule, SupportSet, validate_support
from app.services.runtime import limits_from, load_model
from app.store import MemoryStore

LARSON_ANCHOR = {"in_scope_accuracy": 0.962, "oos_recall": 0.523}  # BERT + threshold, 100 examples/intent


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins."""
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges.tolist()):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            total += in_bin.float().mean().item() * abs(correct[in_bin].mean() - confidence[in_bin].mean()).item()
    return total


def k_shot_support(train: LabeledSet, shots: int, seed: int, limits, descriptions=None) -> SupportSet:
    rng = random.Random(seed)
    examples = [{"text": t, "label": label} for label in train.labels for t in rng.sample(train.by_label[label], shots)]
    return validate_support(examples, None, limits, descriptions)


def queries(data: LabeledSet, labels: list[str]) -> tuple[list[str], torch.Tensor]:
    pairs = [(t, i) for i, label in enumerate(labels) for t in data.by_label[label]]
    return [t for t, _ in pairs], torch.tensor([i for _, i in pairs])


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and 95 % CI half-width over seeds (Student t: with 3 seeds, 4.30 standard errors, not 1.96)."""
    summary = summarise(values)
    return {"mean": summary["mean"], "ci95": summary["ci95"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=Path("runs/embed-cache"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tenant_quality.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = Settings()
    encoder, inner, checkpoint = load_model(settings)
    limits = limits_from(settings)
    service = AdaptationService(
        encoder, inner, MemoryStore(), limits, oos_rule=OosRule(settings.oos_quantile, settings.oos_fallback_threshold)
    )

    def embed(texts: list[str]) -> torch.Tensor:
        return embed_cached(encoder, texts, args.cache)

    def fit(support: SupportSet) -> TenantHead:
        return service.fit(support, inner.steps)[0]

    report: dict = {"checkpoint": checkpoint, "encoder_fingerprint": encoder.fingerprint, "seeds": args.seeds}

    clinc = args.data / "clinc150.jsonl"
    train = load_jsonl(clinc, ["train"])
    test = load_jsonl(clinc, ["test"])
    oos_texts = load_jsonl(clinc, ["oos_test"]).by_label["oos"]
    oos_emb = embed(oos_texts)
    report["oos"] = {}
    for shots in (5, 10):
        accuracy, recall, plain = [], [], []
        for seed in range(args.seeds):
            head = fit(k_shot_support(train, shots, seed, limits))
            texts, targets = queries(test, head.labels)
            emb = embed(texts)
            predicted = head.probabilities(emb).argmax(dim=-1)
            inside = head.oos_scores(emb) >= head.oos_threshold
            accuracy.append(((predicted == targets) & inside).float().mean().item())
            plain.append((predicted == targets).float().mean().item())
            recall.append((head.oos_scores(oos_emb) < head.oos_threshold).float().mean().item())
        report["oos"][f"150-way {shots}-shot"] = {
            "in_scope_accuracy": mean_ci(accuracy),
            "oos_recall": mean_ci(recall),
            "accuracy_without_oos": mean_ci(plain),
        }

    banking = args.data / "banking77.jsonl"
    b_train = load_jsonl(banking, ["train"])
    b_test = load_jsonl(banking, ["test"])
    report["calibration"] = {}
    scales = sorted({1.0, 5.0, 20.0, round(float(inner.scale), 3)})
    by_scale: dict[float, list[float]] = {scale: [] for scale in scales}
    accuracy = []
    for seed in range(args.seeds):
        head = fit(k_shot_support(b_train, 5, seed, limits))
        texts, targets = queries(b_test, head.labels)
        emb = embed(texts)
        for scale in scales:
            probs = dataclasses.replace(head, scale=scale).probabilities(emb)  # the served head at another scale
            by_scale[scale].append(expected_calibration_error(probs, targets))
        accuracy.append((head.probabilities(emb).argmax(-1) == targets).float().mean().item())
    report["calibration"] = {
        "served_scale": float(inner.scale),
        "accuracy": mean_ci(accuracy),
        "ece_by_scale": {str(scale): mean_ci(values) for scale, values in by_scale.items()},
    }

    descriptions = {label: label.replace("_", " ") for label in b_train.labels}
    report["descriptions"] = {}
    for name, extra in (("1-shot", None), ("1-shot + label name", descriptions)):
        scores = []
        for seed in range(args.seeds):
            head = fit(k_shot_support(b_train, 1, seed, limits, extra))
            texts, targets = queries(b_test, head.labels)
            scores.append((head.probabilities(embed(texts)).argmax(-1) == targets).float().mean().item())
        report["descriptions"][name] = mean_ci(scores)

    print(f"checkpoint: {checkpoint}  fingerprint: {encoder.fingerprint}  seeds: {args.seeds}\n")
    print("| CLINC150 | in-scope accuracy | out-of-scope recall | accuracy without OOS |\n|---|---|---|---|")
    for name, row in report["oos"].items():
        cells = [
            f"{100 * row[k]['mean']:.1f} ± {100 * row[k]['ci95']:.1f}"
            for k in ("in_scope_accuracy", "oos_recall", "accuracy_without_oos")
        ]
        print(f"| {name} (ours) | " + " | ".join(cells) + " |")
    print(
        f"| 100-shot BERT (Larson et al. 2019) | {100 * LARSON_ANCHOR['in_scope_accuracy']:.1f} | "
        f"{100 * LARSON_ANCHOR['oos_recall']:.1f} | — |"
    )
    print("\n| BANKING77 77-way 5-shot: logit scale | ECE |\n|---|---|")
    for scale, row in report["calibration"]["ece_by_scale"].items():
        served = " (served)" if float(scale) == round(float(inner.scale), 3) else ""
        print(f"| {scale}{served} | {row['mean']:.3f} ± {row['ci95']:.3f} |")
    print("\n| BANKING77 77-way | accuracy |\n|---|---|")
    for name, row in report["descriptions"].items():
        print(f"| {name} | {100 * row['mean']:.1f} ± {100 * row['ci95']:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
