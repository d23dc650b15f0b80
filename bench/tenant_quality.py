"""Tenant-model quality through the /adapt code path (AdaptationService.fit + TenantHead):

1. out-of-scope detection on CLINC150 (150-way K-shot support from train; test + oos_test queries),
2. calibration (expected calibration error) on BANKING77 all-way 5-shot,
3. label descriptions as extra examples on BANKING77 all-way 1-shot.

    .venv/bin/python -m bench.tenant_quality        # loads the default checkpoint
    FEWSHOT_CHECKPOINT=none .venv/bin/python -m bench.tenant_quality      # base encoder
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from pathlib import Path

import torch

from app.bootstrap import load_model
from app.config import Settings
from app.meta.data import LabeledSet, load_jsonl
from app.meta.evaluate import summarise
from app.ml.calibration import expected_calibration_error
from app.ml.embedding_cache import embed_cached
from app.ml.encoder import SentenceEncoder
from app.ml.head import TenantHead
from app.ml.tenant_fit import OosRule, SupportSet
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.validation import Limits, validate_support
from app.store import MemoryStore
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples

LARSON_ANCHOR = {"in_scope_accuracy": 0.962, "oos_recall": 0.523}  # BERT + threshold, 100 examples/intent
OOS_COLUMNS = ("in_scope_accuracy", "oos_recall", "accuracy_without_oos")


def k_shot_support(train: LabeledSet, shots: int, seed: int, limits, descriptions=None) -> SupportSet:
    examples = k_shot_examples(train.by_label, shots, random.Random(seed))
    return validate_support(examples, None, limits, descriptions)


def queries(data: LabeledSet, labels: list[str]) -> tuple[list[str], torch.Tensor]:
    pairs = [(t, i) for i, label in enumerate(labels) for t in data.by_label[label]]
    return [t for t, _ in pairs], torch.tensor([i for _, i in pairs])


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and 95 % CI half-width over seeds (Student t: with 3 seeds, 4.30 standard errors, not 1.96)."""
    summary = summarise(values)
    return {"mean": summary["mean"], "ci95": summary["ci95"]}


@dataclasses.dataclass
class Bench:
    """What every measurement needs: the fitting path, the embedding cache, the limits and the seeds."""

    service: AdaptationService
    encoder: SentenceEncoder
    inner_steps: int
    limits: Limits
    cache: Path
    seeds: int

    def embed(self, texts: list[str]) -> torch.Tensor:
        return embed_cached(self.encoder, texts, self.cache)

    def fit(self, train: LabeledSet, shots: int, seed: int, descriptions=None) -> TenantHead:
        return self.service.fit(k_shot_support(train, shots, seed, self.limits, descriptions), self.inner_steps)[0]


def out_of_scope(bench: Bench, data: Path) -> dict:
    """CLINC150 150-way K-shot: in-scope accuracy with the OOS rule, OOS recall, accuracy without the rule."""
    clinc = data / "clinc150.jsonl"
    train = load_jsonl(clinc, ["train"])
    test = load_jsonl(clinc, ["test"])
    oos_emb = bench.embed(load_jsonl(clinc, ["oos_test"]).by_label["oos"])
    report = {}
    for shots in (5, 10):
        accuracy, recall, plain = [], [], []
        for seed in range(bench.seeds):
            head = bench.fit(train, shots, seed)
            texts, targets = queries(test, head.labels)
            emb = bench.embed(texts)
            predicted = head.probabilities(emb).argmax(dim=-1)
            inside = head.oos_scores(emb) >= head.oos_threshold
            accuracy.append(((predicted == targets) & inside).float().mean().item())
            plain.append((predicted == targets).float().mean().item())
            recall.append((head.oos_scores(oos_emb) < head.oos_threshold).float().mean().item())
        report[f"150-way {shots}-shot"] = {
            "in_scope_accuracy": mean_ci(accuracy),
            "oos_recall": mean_ci(recall),
            "accuracy_without_oos": mean_ci(plain),
        }
    return report


def calibration(bench: Bench, train: LabeledSet, test: LabeledSet, served_scale: float) -> dict:
    """BANKING77 all-way 5-shot: accuracy and ECE of the served head at several logit scales."""
    scales = sorted({1.0, 5.0, 20.0, round(served_scale, 3)})
    by_scale: dict[float, list[float]] = {scale: [] for scale in scales}
    accuracy = []
    for seed in range(bench.seeds):
        head = bench.fit(train, 5, seed)
        texts, targets = queries(test, head.labels)
        emb = bench.embed(texts)
        for scale in scales:
            probs = dataclasses.replace(head, scale=scale).probabilities(emb)  # the served head at another scale
            by_scale[scale].append(expected_calibration_error(probs, targets))
        accuracy.append((head.probabilities(emb).argmax(-1) == targets).float().mean().item())
    return {
        "served_scale": served_scale,
        "accuracy": mean_ci(accuracy),
        "ece_by_scale": {str(scale): mean_ci(values) for scale, values in by_scale.items()},
    }


def label_descriptions(bench: Bench, train: LabeledSet, test: LabeledSet) -> dict:
    """BANKING77 all-way 1-shot, without and with each label's name as an extra example."""
    descriptions = {label: label.replace("_", " ") for label in train.labels}
    report = {}
    for name, extra in (("1-shot", None), ("1-shot + label name", descriptions)):
        scores = []
        for seed in range(bench.seeds):
            head = bench.fit(train, 1, seed, extra)
            texts, targets = queries(test, head.labels)
            scores.append((head.probabilities(bench.embed(texts)).argmax(-1) == targets).float().mean().item())
        report[name] = mean_ci(scores)
    return report


def print_report(report: dict) -> None:
    print(
        f"checkpoint: {report['checkpoint']}  fingerprint: {report['encoder_fingerprint']}  seeds: {report['seeds']}\n"
    )
    pct = "{:.1f} ± {:.1f}".format
    oos_rows = [
        (f"{name} (ours)", *(pct(100 * row[k]["mean"], 100 * row[k]["ci95"]) for k in OOS_COLUMNS))
        for name, row in report["oos"].items()
    ]
    anchor = ("100-shot BERT (Larson et al. 2019)", *(f"{100 * v:.1f}" for v in LARSON_ANCHOR.values()), "—")
    print_table(["CLINC150", "in-scope accuracy", "out-of-scope recall", "accuracy without OOS"], [*oos_rows, anchor])
    served = round(report["calibration"]["served_scale"], 3)
    print()
    print_table(
        ["BANKING77 77-way 5-shot: logit scale", "ECE"],
        [
            (f"{scale}{' (served)' if float(scale) == served else ''}", f"{row['mean']:.3f} ± {row['ci95']:.3f}")
            for scale, row in report["calibration"]["ece_by_scale"].items()
        ],
    )
    print()
    print_table(
        ["BANKING77 77-way", "accuracy"],
        [(name, pct(100 * row["mean"], 100 * row["ci95"])) for name, row in report["descriptions"].items()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--cache", type=Path, default=Path("runs/embed-cache"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tenant_quality.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    settings = Settings()
    encoder, inner, checkpoint = load_model(settings)
    limits = settings.limits()
    oos_rule = OosRule(settings.oos_quantile, settings.oos_fallback_threshold)
    service = AdaptationService(TierContext(encoder, inner, limits, oos_rule=oos_rule), MemoryStore())
    bench = Bench(service, encoder, inner.steps, limits, args.cache, args.seeds)
    banking = args.data / "banking77.jsonl"
    b_train, b_test = load_jsonl(banking, ["train"]), load_jsonl(banking, ["test"])
    report: dict = {"checkpoint": checkpoint, "encoder_fingerprint": encoder.fingerprint, "seeds": args.seeds}
    report["oos"] = out_of_scope(bench, args.data)
    report["calibration"] = calibration(bench, b_train, b_test, float(inner.scale))
    report["descriptions"] = label_descriptions(bench, b_train, b_test)
    print_report(report)
    write_json(args.out, report)


if __name__ == "__main__":
    main()
