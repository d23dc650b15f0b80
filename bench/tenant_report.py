"""The tenant report's measured goals, through the /adapt fit on embeddings computed once (runs/embed-cache):

1. truth: BANKING77 77-way 5-shot (support from train) and CLINC150 150-way 5-shot, 10 seeds: the report's
   cross-validated accuracy (and, apart, its learning-curve projection) vs the accuracy of the tenant's model on
   the whole test split;
2. speed: the whole report (cross-validation + every section) for 77-way 5-shot and 150-way 10-shot;
3. suggestions vs random: BANKING77 from 2 examples per label, 3 rounds of 77 texts chosen by `suggest` from the
   train split's remaining texts or at random (same pool), 5 seeds; test accuracy after each round (PNG curve).

4. dev (`--parts dev`, never a test split): the truth protocol with the support from `train` and the truth on the
   rest of `train` (CLINC150: on `val`), the protocol the cross-validated interval was chosen on.

    .venv/bin/python -m bench.tenant_report
"""

from __future__ import annotations

import argparse
import dataclasses
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
from app.ml.tenant_report import SingleLabelReport, build_report, cross_validate, label_counts, stratified_folds
from app.ml.tenant_report_types import Scored
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
    taken = set(texts)
    pairs = [(t, y) for y, label in enumerate(labels) for t in test.by_label[label] if t not in taken]
    x = test.embed([t for t, _ in pairs])
    return (head.probabilities(x).argmax(-1) == torch.tensor([y for _, y in pairs])).float().mean().item()


def report_for(train: EmbeddedSet, texts: list[str], targets: list[int], labels: list[str], inner) -> SingleLabelReport:
    return report_and_scored(train, texts, targets, labels, inner)[0]


def report_and_scored(train: EmbeddedSet, texts, targets, labels, inner) -> tuple[SingleLabelReport, Scored]:
    x = train.embed(texts)
    scored = cross_validate(x, targets, labels, texts, inner, OosRule())
    report = build_report(scored, labels, label_counts(targets, len(labels)), x, targets, texts, "cross_validation")
    return report, scored


def raw_rows(scored: Scored, targets: list[int], n_labels: int) -> dict:
    """Per held-out row: label, right or not, fold (for studying the interval offline)."""
    folds, _, k = stratified_folds(targets, n_labels)
    fold_of_row = [f for f in range(k) for f_i in folds if f_i == f]
    curve = scored.curve
    return {
        "targets": scored.targets.tolist(),
        "correct": (scored.probabilities.argmax(-1) == scored.targets).int().tolist(),
        "folds": fold_of_row,
        "curve": None if curve is None else dataclasses.asdict(curve),
    }


def truth(
    name: str, train: EmbeddedSet, test: EmbeddedSet, shots: int, inner, seeds: int, raw: list | None = None
) -> dict:
    """The report on `shots` examples per label from `train` vs the adapted model's accuracy on `test` (less the
    support texts, when `test` is the same split)."""
    rows = []
    for seed in range(seeds):
        rng = random.Random(seed)
        labels = train.labels
        texts, targets = support_of(train, labels, shots, rng)
        estimate, scored = report_and_scored(train, texts, targets, labels, inner)
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
        if raw is not None:
            raw.append({"data": name, "seed": seed, "truth": actual, **raw_rows(scored, targets, len(labels))})
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
        "mean_ci_width_points": 100 * statistics.mean(r["ci95"][1] - r["ci95"][0] for r in rows),
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
    parser.add_argument("--parts", default="truth,speed,rounds", help="also: dev (the interval's choice, no test)")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--dev-sets", default="banking77,clinc150", help="data files for `dev` (train -> rest or val)")
    parser.add_argument("--raw", type=Path, help="write each seed's held-out rows here (JSON)")
    args = parser.parse_args()
    torch.manual_seed(0)
    encoder, inner, checkpoint = load_model(Settings())
    inner: InnerLoopParams

    def split(name: str, splits: list[str]) -> EmbeddedSet:
        part = embedded_set(encoder, args.data / f"{name}.jsonl", splits, args.cache)
        part.by_label.pop("oos", None)  # CLINC150's out-of-scope queries are no intent
        return part

    parts = args.parts.split(",")
    result: dict = {"checkpoint": checkpoint, "encoder_fingerprint": encoder.fingerprint, "cpu_threads": 2}
    tables = []
    raw: list | None = [] if args.raw else None
    if "dev" in parts:  # choosing the interval: never a test split
        result["truth"] = []
        for name in args.dev_sets.split(","):
            pool = split(name, ["train"])
            held = split(name, ["val"]) if name == "clinc150" else pool  # else: the rest of train
            pool.by_label = {y: t for y, t in pool.by_label.items() if len(t) >= 2 * args.shots}
            title = f"{name} train ({'val' if held is not pool else 'rest of train'})"
            result["truth"].append(truth(title, pool, held, args.shots, inner, args.seeds, raw))
    if "truth" in parts:
        b_train, b_test = split("banking77", ["train"]), split("banking77", ["test"])
        c_train, c_test = split("clinc150", ["train"]), split("clinc150", ["test"])
        result["truth"] = [
            truth("BANKING77", b_train, b_test, args.shots, inner, args.seeds, raw),
            truth("CLINC150", c_train, c_test, args.shots, inner, args.seeds, raw),
        ]
    if "truth" in result:
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
                    "mean CI width",
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
                        f"{r['mean_ci_width_points']:.1f}",
                    )
                    for r in result["truth"]
                ],
            )
        )
    if "speed" in parts:
        c_train = split("clinc150", ["train"])
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
        b_train, b_test = split("banking77", ["train"]), split("banking77", ["test"])
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
    if args.raw:
        write_json(args.raw, {"shots": args.shots, "seeds": raw})


if __name__ == "__main__":
    main()
