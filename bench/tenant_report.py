"""The tenant report's measured goals, through the /adapt fit on embeddings computed once (runs/embed-cache):

1. truth: BANKING77 77-way 5-shot (support from train) and CLINC150 150-way 5-shot, 10 seeds: the report's
   cross-validated accuracy (and, apart, its learning-curve projection) vs the accuracy of the tenant's model on
   the whole test split;
2. speed: the whole report (cross-validation + every section) for 77-way 5-shot and 150-way 10-shot;
3. suggestions vs random: BANKING77 from 2 examples per label, 3 rounds of 77 texts chosen by `suggest` from the
   train split's remaining texts or at random (same pool), 5 seeds; test accuracy after each round (PNG curve).

    .venv/bin/python -m bench.tenant_report
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import torch

from app.bootstrap import load_model
from app.config import Settings
from app.ml.learner import InnerLoopParams
from app.ml.suggest import suggest
from app.ml.tenant_fit import OosRule, fit_embedded
from app.ml.tenant_report import SingleLabelReport, build_report, cross_validate, label_counts
from bench.common.data import add_data_option
from bench.common.embedded import DEFAULT_CACHE, EmbeddedSet, embedded_set
from bench.common.results import markdown_table, write_json


def support_of(train: EmbeddedSet, labels: list[str], shots: int, rng: random.Random) -> tuple[list[str], list[int]]:
    texts, targets = [], []
    for y, label in enumerate(labels):
        for text in rng.sample(train.by_label[label], shots):
            texts.append(text)
            targets.append(y)
    return texts, targets


def test_accuracy(train: EmbeddedSet, test: EmbeddedSet, texts, targets, labels, inner) -> float:
    head = fit_embedded(train.embed(texts), torch.tensor(targets), labels, inner, OosRule())
    pairs = [(t, y) for y, label in enumerate(labels) for t in test.by_label[label]]
    x = test.embed([t for t, _ in pairs])
    return (head.probabilities(x).argmax(-1) == torch.tensor([y for _, y in pairs])).float().mean().item()


def report_for(train: EmbeddedSet, texts: list[str], targets: list[int], labels: list[str], inner) -> SingleLabelReport:
    x = train.embed(texts)
    scored = cross_validate(x, targets, labels, texts, inner, OosRule())
    return build_report(scored, labels, label_counts(targets, len(labels)), x, targets, texts, "cross_validation")


def truth(name: str, train: EmbeddedSet, test: EmbeddedSet, shots: int, inner, seeds: int) -> dict:
    rows = []
    for seed in range(seeds):
        rng = random.Random(seed)
        labels = train.labels
        texts, targets = support_of(train, labels, shots, rng)
        estimate = report_for(train, texts, targets, labels, inner)
        actual = test_accuracy(train, test, texts, targets, labels, inner)
        assert estimate.accuracy_interval is not None  # every label has examples to hold out
        low, high = estimate.accuracy_interval
        rows.append(
            {
                "seed": seed,
                "cv_accuracy": estimate.accuracy,
                "projected_accuracy": estimate.projected_accuracy,
                "ci95": [low, high],
                "test_accuracy": actual,
                "inside_ci": low <= actual <= high,
                "cv_ece": estimate.ece,
            }
        )
        print(name, rows[-1], flush=True)
    gaps = [abs(r["cv_accuracy"] - r["test_accuracy"]) for r in rows]
    projected_gaps = [abs(r["projected_accuracy"] - r["test_accuracy"]) for r in rows]
    signed = [r["cv_accuracy"] - r["test_accuracy"] for r in rows]
    return {
        "data": name,
        "regime": f"{len(train.labels)}-way {shots}-shot",
        "mean_abs_gap_points": 100 * statistics.mean(gaps),
        "mean_signed_gap_points": 100 * statistics.mean(signed),
        "mean_abs_gap_points_of_projection": 100 * statistics.mean(projected_gaps),
        "mean_cv_accuracy": statistics.mean(r["cv_accuracy"] for r in rows),
        "mean_projected_accuracy": statistics.mean(r["projected_accuracy"] for r in rows),
        "mean_test_accuracy": statistics.mean(r["test_accuracy"] for r in rows),
        "inside_ci": sum(r["inside_ci"] for r in rows),
        "seeds": rows,
    }


def speed(train: EmbeddedSet, inner, threads: int, repeats: int = 5) -> list[dict]:
    torch.set_num_threads(threads)
    out = []
    for n_way, shots in ((77, 5), (150, 10)):
        labels = train.labels[:n_way]
        texts, targets = support_of(train, labels, shots, random.Random(0))
        times, cpu = [], []
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            report_for(train, texts, targets, labels, inner)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        out.append(
            {
                "regime": f"{n_way}-way {shots}-shot",
                "threads": threads,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "median_cpu_s": statistics.median(cpu),
                "load_average_1min": os.getloadavg()[0],
            }
        )
        print(out[-1], flush=True)
    return out


def labeling_rounds(train: EmbeddedSet, test: EmbeddedSet, inner, seeds: int, rounds: int, per_round: int) -> dict:
    labels = train.labels
    curves: dict[str, list[list[float]]] = {"suggest": [], "random": []}
    for seed in range(seeds):
        rng = random.Random(seed)
        start_texts, start_targets = support_of(train, labels, 2, rng)
        truth_of = {t: y for y, label in enumerate(labels) for t in train.by_label[label]}
        for strategy in curves:
            texts, targets = list(start_texts), list(start_targets)
            pool = sorted(set(truth_of) - set(texts))
            picker = random.Random(1000 + seed)
            curve = [test_accuracy(train, test, texts, targets, labels, inner)]
            for _ in range(rounds):
                if strategy == "random":
                    chosen = picker.sample(pool, per_round)
                else:
                    head = fit_embedded(train.embed(texts), torch.tensor(targets), labels, inner, OosRule())
                    picks = suggest(head, train.embed(pool), train.embed(texts), per_round)
                    chosen = [pool[p.index] for p in picks]
                taken = set(chosen)
                pool = [t for t in pool if t not in taken]
                texts += chosen
                targets += [truth_of[t] for t in chosen]
                curve.append(test_accuracy(train, test, texts, targets, labels, inner))
            curves[strategy].append(curve)
            print(strategy, seed, [round(100 * a, 2) for a in curve], flush=True)
    mean = {s: [statistics.mean(c[i] for c in cs) for i in range(rounds + 1)] for s, cs in curves.items()}
    gains = {s: [c[-1] - c[0] for c in cs] for s, cs in curves.items()}
    return {
        "start_per_label": 2,
        "rounds": rounds,
        "per_round": per_round,
        "seeds": seeds,
        "curves": curves,
        "mean_curve": mean,
        "mean_gain_points": {s: 100 * statistics.mean(g) for s, g in gains.items()},
        "advantage_points": 100 * (statistics.mean(gains["suggest"]) - statistics.mean(gains["random"])),
    }


def plot(rounds: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labeled = [77 * 2 + rounds["per_round"] * i for i in range(rounds["rounds"] + 1)]
    figure, axis = plt.subplots(figsize=(6, 4))
    for strategy, curve in rounds["mean_curve"].items():
        axis.plot(labeled, [100 * a for a in curve], marker="o", label=strategy)
    axis.set_xlabel("labeled examples (BANKING77, 77 labels)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(f"/suggest vs random, mean of {rounds['seeds']} seeds")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--round-seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tenant_report.json"))
    parser.add_argument("--parts", default="truth,speed,rounds")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder, inner, checkpoint = load_model(Settings())
    inner: InnerLoopParams
    banking, clinc = args.data / "banking77.jsonl", args.data / "clinc150.jsonl"
    b_train, b_test = (embedded_set(encoder, banking, [s], args.cache) for s in ("train", "test"))
    c_train, c_test = (embedded_set(encoder, clinc, [s], args.cache) for s in ("train", "test"))
    for part in (c_train, c_test):
        part.by_label.pop("oos", None)
    parts = args.parts.split(",")
    result: dict = {"checkpoint": checkpoint, "encoder_fingerprint": encoder.fingerprint, "cpu_threads": 2}
    tables = []
    if "truth" in parts:
        result["truth"] = [
            truth("BANKING77", b_train, b_test, 5, inner, args.seeds),
            truth("CLINC150", c_train, c_test, 5, inner, args.seeds),
        ]
        tables.append(
            markdown_table(
                [
                    "data",
                    "regime",
                    "report's accuracy",
                    "projection",
                    "test accuracy",
                    "mean abs gap (points)",
                    "mean signed gap",
                    "gap of the projection",
                    "test inside CI",
                ],
                [
                    (
                        r["data"],
                        r["regime"],
                        f"{100 * r['mean_cv_accuracy']:.1f}",
                        f"{100 * r['mean_projected_accuracy']:.1f}",
                        f"{100 * r['mean_test_accuracy']:.1f}",
                        f"{r['mean_abs_gap_points']:.2f}",
                        f"{r['mean_signed_gap_points']:+.2f}",
                        f"{r['mean_abs_gap_points_of_projection']:.2f}",
                        f"{r['inside_ci']}/{len(r['seeds'])}",
                    )
                    for r in result["truth"]
                ],
            )
        )
    if "speed" in parts:
        result["speed"] = speed(c_train, inner, 2) + speed(c_train, inner, 1)
        tables.append(
            markdown_table(
                ["report for", "torch threads", "median wall s", "min wall s", "median CPU s", "load average"],
                [
                    (
                        r["regime"],
                        r["threads"],
                        f"{r['median_s']:.2f}",
                        f"{r['min_s']:.2f}",
                        f"{r['median_cpu_s']:.2f}",
                        f"{r['load_average_1min']:.1f}",
                    )
                    for r in result["speed"]
                ],
            )
        )
    if "rounds" in parts:
        torch.set_num_threads(2)
        rounds = labeling_rounds(b_train, b_test, inner, args.round_seeds, 3, 77)
        result["rounds"] = rounds
        plot(rounds, args.out.with_suffix(".png"))
        labeled = [154 + 77 * i for i in range(4)]
        tables.append(
            markdown_table(
                ["strategy", *(f"{n} labeled" for n in labeled), "gain (points)"],
                [
                    (s, *(f"{100 * a:.1f}" for a in curve), f"{rounds['mean_gain_points'][s]:+.2f}")
                    for s, curve in rounds["mean_curve"].items()
                ],
            )
        )
    result["tables"] = tables
    print("\n\n".join(tables))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
