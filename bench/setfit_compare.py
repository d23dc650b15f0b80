"""SetFit (same MiniLM base, library defaults) vs this service's adaptation on the same BANKING77
77-way K-shot task: fit time and test accuracy.

    .venv/bin/pip install -e '.[bench]'   # setfit: bench-only dependency (pyproject extra `bench`)
    .venv/bin/python -m bench.setfit_compare --shots 5 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from app.bootstrap import load_model
from app.config import PACKAGED_ENCODER, Settings
from app.meta.data import load_jsonl
from app.ml.encoder import resolve_source
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.validation import validate_support
from app.store import MemoryStore
from bench.common.data import add_data_option
from bench.common.extras import require_bench_extra
from bench.common.results import print_table, write_json
from bench.common.support import k_shot_examples


def ours(examples: list[dict], test: list[tuple[str, str]]) -> dict[str, float]:
    """The /adapt code path (AdaptationService.fit) then the served head on the test texts."""
    settings = Settings()
    encoder, inner, checkpoint = load_model(settings)
    service = AdaptationService(TierContext(encoder, inner, settings.limits()), MemoryStore())
    support = validate_support(examples, None, service.context.limits)
    service.fit(validate_support(examples[:10], None, service.context.limits), inner.steps)  # warm-up
    started = time.perf_counter()
    head, _, _ = service.fit(support, inner.steps)
    fit_s = time.perf_counter() - started
    embeddings = encoder.embed([t for t, _ in test], batch_size=128)
    predicted = head.probabilities(embeddings).argmax(dim=-1).tolist()
    accuracy = sum(head.labels[p] == label for p, (_, label) in zip(predicted, test, strict=True)) / len(test)
    return {"fit_s": fit_s, "accuracy": accuracy, "checkpoint": checkpoint}


def setfit(examples: list[dict], test: list[tuple[str, str]], seed: int, iterations: int | None) -> dict[str, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    torch.manual_seed(seed)
    model = SetFitModel.from_pretrained(str(resolve_source(PACKAGED_ENCODER)))
    train = Dataset.from_list([{"text": e["text"], "label": e["label"]} for e in examples])
    options = {"seed": seed} | ({"num_iterations": iterations} if iterations else {})
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:  # its trainer saves pickled checkpoints
        trainer = Trainer(model=model, args=TrainingArguments(output_dir=scratch, **options), train_dataset=train)
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.train()
        fit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    predicted = model.predict([t for t, _ in test])
    accuracy = sum(str(p) == label for p, (_, label) in zip(predicted, test, strict=True)) / len(test)
    return {
        "fit_s": fit_s,
        "fit_cpu_s": cpu_s,
        "accuracy": accuracy,
        "num_iterations": iterations,
        "train_steps": getattr(getattr(trainer, "state", None), "global_step", None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_option(parser)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-setfit", action="store_true")
    parser.add_argument("--skip-ours", action="store_true", help="keep the `ours` entry already in --out")
    parser.add_argument(
        "--setfit-iterations", type=int, default=None, help="SetFit `num_iterations` (default: the library's)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/setfit_compare.json"))
    args = parser.parse_args()
    if not args.skip_setfit:
        require_bench_extra("setfit", "datasets")
    banking = args.data / "banking77.jsonl"
    train = load_jsonl(banking, ["train"])
    test = load_jsonl(banking, ["test"]).pairs()
    rng = random.Random(args.seed)
    examples = k_shot_examples(train.by_label, args.shots, rng)
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["task"] = f"BANKING77 77-way {args.shots}-shot, seed {args.seed}"
    if not args.skip_ours:
        report["ours"] = ours(examples, test)
        print(f"ours: {report['ours']}", flush=True)
    if not args.skip_setfit:
        report["setfit"] = setfit(examples, test, args.seed, args.setfit_iterations)
    if "ours" in report and "setfit" in report:
        report["speedup"] = report["setfit"]["fit_s"] / report["ours"]["fit_s"]
    print_table(
        ["system", "fit time (s)", "accuracy"],
        [
            (name, f"{report[name]['fit_s']:.2f}", f"{100 * report[name]['accuracy']:.1f} %")
            for name in ("ours", "setfit")
            if name in report
        ],
    )
    if "speedup" in report:
        print(f"\nadaptation speed-up over SetFit: {report['speedup']:.0f}x")
    write_json(args.out, report)


if __name__ == "__main__":
    main()
