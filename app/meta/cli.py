"""`fewshot meta-train` and `fewshot evaluate` (registered on the main CLI)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from app.ml import registry
from app.ml.packaged import SHIPPED_CHECKPOINT


def _meta_train(args: argparse.Namespace) -> int:
    from app.meta.config import load_config
    from app.meta.train import meta_train

    overrides = json.loads(args.set) if args.set else {}
    summary = meta_train(load_config(Path(args.config), overrides), progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return 0


def _meta_train_multilabel(args: argparse.Namespace) -> int:
    from app.meta.multilabel import MultiLabelMetaConfig, meta_train_multilabel

    cfg = MultiLabelMetaConfig(
        data_dir=Path(args.data_dir),
        source=args.source,
        checkpoint=args.checkpoint,
        outer_steps=args.steps,
        write=not args.dry_run,
    )
    summary = meta_train_multilabel(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.task == "multi_label":
        return _evaluate_multilabel(args)
    from app.meta.evaluate import EvalConfig, run_evaluation

    cfg = EvalConfig(
        data=Path(args.data),
        checkpoint=args.checkpoint,
        runs=[Path(r) for r in args.run],
        out_dir=Path(args.out),
        name=args.name,
        episodes=args.episodes,
        seeds=args.seeds,
        support_pool=args.support_pool,
        cache_dir=Path(args.cache) if args.cache else None,
        encoder=args.encoder,
    )
    result = run_evaluation(cfg)
    print(result["markdown"])
    return 0


def _evaluate_multilabel(args: argparse.Namespace) -> int:
    from app.meta.multilabel import MultiLabelEvalConfig, run_multilabel_evaluation

    data = Path(args.data)
    cfg = MultiLabelEvalConfig(
        data_dir=data if data.is_dir() else data.parent,
        sets=tuple(args.sets),
        shots=tuple(args.shots),
        seeds=args.seeds,
        checkpoint=args.checkpoint,
        out=Path(args.out) / f"eval_{args.name}.json",
        cache_dir=Path(args.cache) if args.cache else None,
        split=args.split,
        label_names=args.label_names,
    )
    run_multilabel_evaluation(cfg)
    return 0


def register_meta_commands(commands: argparse._SubParsersAction) -> None:
    """Add the meta-learning subcommands to the `fewshot` parser."""
    train = commands.add_parser("meta-train", help="episodic meta-training of the encoder + inner loop")
    train.add_argument("--config", required=True, help="YAML or JSON config (see training/configs/)")
    train.add_argument("--set", default="", help="JSON object of top-level overrides, e.g. '{\"max_steps\": 10}'")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_meta_train)

    multilabel = commands.add_parser(
        "meta-train-multilabel", help="meta-learn the multi-label (one-vs-rest) inner loop of a checkpoint"
    )
    multilabel.add_argument("--data-dir", default="data", help="folder of the JSONL sets (docs/data.md)")
    multilabel.add_argument("--source", default="goemotions_multilabel", help="multi-label JSONL set (train/val)")
    multilabel.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT, help="folder to add it to")
    multilabel.add_argument("--steps", type=int, default=120, help="outer (meta) steps")
    multilabel.add_argument("--dry-run", action="store_true", help="report, do not write the checkpoint")
    multilabel.set_defaults(handler=_meta_train_multilabel)

    evaluate = commands.add_parser("evaluate", help="few-shot protocols on a JSONL set (default BANKING77)")
    evaluate.add_argument(
        "--data", default="data/banking77.jsonl", help="JSONL with train and test splits (docs/data.md)"
    )
    evaluate.add_argument(
        "--checkpoint",
        default=SHIPPED_CHECKPOINT,
        help="shipped checkpoint, scored through the /adapt code path ('none' to skip)",
    )
    evaluate.add_argument("--run", action="append", default=[], help="runs/<name>/best folder of an algorithm")
    evaluate.add_argument("--out", default="bench/results", help="folder for eval_<name>.json|md|png")
    evaluate.add_argument("--name", default="banking77")
    evaluate.add_argument("--episodes", type=int, default=600, help="episodes per N-way K-shot protocol")
    evaluate.add_argument("--seeds", type=int, default=5, help="seeds of the all-way protocol")
    evaluate.add_argument(
        "--support-pool",
        type=int,
        default=0,
        help="draw supports from a seeded pool of this many train texts per class (0 = all)",
    )
    evaluate.add_argument("--cache", default="runs/embed-cache", help="embedding cache folder ('' = none)")
    evaluate.add_argument(
        "--task",
        choices=["single_label", "multi_label"],
        default="single_label",
        help="multi_label: K per label from train, the --split as queries, micro/macro-F1 and exact match "
        "(--data: the data folder; --sets, --shots)",
    )
    evaluate.add_argument("--sets", nargs="+", default=["mixsnips", "goemotions_multilabel"], help="multi_label sets")
    evaluate.add_argument("--shots", nargs="+", type=int, default=[4, 8, 16], help="multi_label: K per label")
    evaluate.add_argument("--split", default="test", help="multi_label query split (`val` for tuning)")
    evaluate.add_argument(
        "--label-names",
        choices=["auto", "on", "off"],
        default="auto",
        help="multi_label: the /adapt path's label_names",
    )
    evaluate.add_argument(
        "--encoder",
        choices=registry.names(),
        default=registry.DEFAULT_ENCODER,
        help="single_label: the tier whose frozen base (and --checkpoint, `none` for mpnet) is evaluated",
    )
    evaluate.set_defaults(handler=_evaluate)


def main(argv: list[str] | None = None) -> int:
    """`python -m app.meta.cli meta-train|evaluate ...`: the same commands without the service's imports
    (for training machines that have torch and transformers but not FastAPI or pydantic)."""
    parser = argparse.ArgumentParser(prog="python -m app.meta.cli")
    register_meta_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
