"""`fewshot meta-train` and `fewshot evaluate` (registered on the main CLI)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _meta_train(args: argparse.Namespace) -> int:
    from app.meta.config import load_config
    from app.meta.train import meta_train

    overrides = json.loads(args.set) if args.set else {}
    summary = meta_train(load_config(Path(args.config), overrides), progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
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
    )
    result = run_evaluation(cfg)
    print(result["markdown"])
    return 0


def register_meta_commands(commands: argparse._SubParsersAction) -> None:
    """Add the meta-learning subcommands to the `fewshot` parser."""
    train = commands.add_parser("meta-train", help="episodic meta-training of the encoder + inner loop")
    train.add_argument("--config", required=True, help="YAML or JSON config (see training/configs/)")
    train.add_argument("--set", default="", help="JSON object of top-level overrides, e.g. '{\"max_steps\": 10}'")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_meta_train)

    evaluate = commands.add_parser("evaluate", help="few-shot protocols on a JSONL set (default BANKING77)")
    evaluate.add_argument("--data", default="../shared/data/banking77.jsonl", help="JSONL with train and test splits")
    evaluate.add_argument(
        "--checkpoint",
        default="models/minilm-protomaml",
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
