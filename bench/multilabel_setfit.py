"""SetFit as the multi-label reference: SetFit (same MiniLM base, library defaults, one-vs-rest head) on
K-per-label support sets of MixSNIPS and multi-label GoEmotions; fit time, micro-F1, macro-F1, exact match.

The protocol is app/meta/multilabel_data.py's: `sample_k_per_label` on the train split, the test split as
queries, labels in sorted order. Resumable: runs already in --out (keyed by set, K, seed) are skipped and
each finished run is written at once.

    .venv/bin/pip install -e '.[bench]'   # setfit: bench-only dependency (pyproject extra `bench`)
    .venv/bin/python -m bench.multilabel_setfit --shots 8 --seeds 0 --threads 1   # 1 thread: 2 shared cores
    .venv/bin/python -m bench.multilabel_setfit --shots 8 --seeds 1 2 --threads 1   # more seeds, same --out
    .venv/bin/python -m bench.multilabel_setfit --sets mixsnips --max-test 50 --out /tmp/smoke.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from app.config import PACKAGED_ENCODER
from app.meta.multilabel_data import MultiLabelRows, load_multilabel, multi_hot, multilabel_metrics, sample_k_per_label
from app.ml.encoder import resolve_source
from bench.common.data import add_data_option
from bench.common.extras import require_bench_extra
from bench.common.results import print_table, write_json

METRICS = ("micro_f1", "macro_f1", "exact_match")


def setfit_multilabel(support: MultiLabelRows, test: MultiLabelRows, labels: list[str], seed: int) -> dict[str, Any]:
    """Fit SetFit one-vs-rest on `support` (multi-hot targets in `labels` order), then score `test`."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    torch.manual_seed(seed)
    model = SetFitModel.from_pretrained(str(resolve_source(PACKAGED_ENCODER)), multi_target_strategy="one-vs-rest")
    targets = multi_hot(support.label_sets, labels).int().tolist()
    train = Dataset.from_dict({"text": support.texts, "label": targets})
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:  # its trainer saves pickled checkpoints
        trainer = Trainer(model=model, args=TrainingArguments(output_dir=scratch, seed=seed), train_dataset=train)
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.train()
        fit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    pairs = trainer.st_trainer.train_dataset
    started = time.perf_counter()
    predicted = torch.as_tensor(model.predict(test.texts, batch_size=64, as_numpy=True)).reshape(len(test), -1)
    predict_s = time.perf_counter() - started
    truth = multi_hot(test.label_sets, labels)
    return {
        "fit_s": fit_s,
        "fit_cpu_s": cpu_s,
        "train_steps": trainer.st_trainer.state.global_step,
        "pairs": len(pairs),
        "positive_pairs": int(sum(label == 1.0 for label in pairs["label"])),
        "predict_s": predict_s,
        "labels_per_text": {"predicted": float(predicted.sum(1).float().mean()), "true": float(truth.sum(1).mean())},
        **multilabel_metrics(predicted, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--sets", nargs="+", default=["mixsnips", "goemotions_multilabel"])
    parser.add_argument("--shots", type=int, nargs="+", default=[8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-test", type=int, default=0, help="first N test texts only (smoke tests); 0: all")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/multilabel_setfit.json"))
    args = parser.parse_args()
    require_bench_extra("setfit", "datasets")
    import setfit

    if args.threads:
        torch.set_num_threads(args.threads)

    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    if report.setdefault("max_test", args.max_test) != args.max_test:
        raise SystemExit(f"{args.out} holds runs with --max-test {report['max_test']}; use another --out")
    report["setfit_version"] = setfit.__version__
    done = {(run["set"], run["shots"], run["seed"]) for run in report["runs"]}
    for shots in args.shots:
        for seed in args.seeds:
            for name in args.sets:
                if (name, shots, seed) in done:
                    continue
                path = args.data / f"{name}.jsonl"
                train, test = load_multilabel(path, ["train"]), load_multilabel(path, ["test"])
                if args.max_test:
                    test = MultiLabelRows(test.name, test.texts[: args.max_test], test.label_sets[: args.max_test])
                support = sample_k_per_label(train, shots, seed)
                print(f"{name} K={shots} seed={seed}: {len(support)} support texts, {len(test)} test", flush=True)
                result = setfit_multilabel(support, test, train.labels, seed)
                run = {"set": name, "shots": shots, "seed": seed, "torch_threads": torch.get_num_threads()}
                run |= {"labels": len(train.labels), "n_support": len(support), "n_test": len(test), **result}
                print(json.dumps(run), flush=True)
                report["runs"].append(run)
                write_json(args.out, report)
    print_table(
        ["set", "K", "seed", "n_support", "fit s", "micro-F1", "macro-F1", "exact match"],
        [
            (
                r["set"],
                r["shots"],
                r["seed"],
                r["n_support"],
                f"{r['fit_s']:.1f}",
                *(f"{100 * r[k]:.1f}" for k in METRICS),
            )
            for r in report["runs"]
        ],
    )
    write_json(args.out, report)


if __name__ == "__main__":
    main()
