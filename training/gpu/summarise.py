"""Table of GPU meta-training runs from one or more `results.tar.xz` (training/gpu/pack.py).

For each run: its objective, outer steps, the BANKING77 *train*-split selection accuracy at step 0 (the base
encoder), its best and its last value, and held-out-class accuracy of the training sources.

    python -m training.gpu.summarise RESULTS.tar.xz ... --out bench/results/gpu_meta_train.json
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path
from typing import Any


def objective(config: dict[str, Any]) -> str:
    """The algorithm, with the label-name term's weight when it has one (`supcon + names 1`)."""
    weight = float(config.get("algorithm_options", {}).get("names_weight", 0.0))
    return f"{config['algorithm']} + names {weight:g}" if weight else config["algorithm"]


def runs_in(results: Path) -> list[dict[str, Any]]:
    rows = []
    with tarfile.open(results) as tar:
        for member in tar.getmembers():
            if not member.name.endswith("/summary.json"):
                continue
            summary = json.load(tar.extractfile(member))  # type: ignore[arg-type]
            manifest_member = member.name.replace("summary.json", "manifest.json")
            config = json.load(tar.extractfile(manifest_member))["config"]  # type: ignore[arg-type]
            history = summary["history"]
            best = max(history, key=lambda row: row["banking77_train_acc"])
            rows.append(
                {
                    "name": summary["name"],
                    "objective": objective(config),
                    "train_layers": config["train_layers"],
                    "outer_lr": config["outer_lr"],
                    "anchor_weight": config.get("anchor_weight", 0.0),
                    "sources": [s["name"] for s in config["sources"]],
                    "steps": summary["steps"],
                    "banking77_train_step0": history[0]["banking77_train_acc"],
                    "banking77_train_best": best["banking77_train_acc"],
                    "best_step": best["step"],
                    "banking77_train_last": history[-1]["banking77_train_acc"],
                    "heldout_step0": history[0]["heldout_acc"],
                    "heldout_best": max(row["heldout_acc"] for row in history),
                    "heldout_last": history[-1]["heldout_acc"],
                    "history": history,
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | objective | trained | outer lr | anchor | sources | steps "
        "| BANKING77 train: step 0 → best (step) → last | held-out: step 0 → best |",
        "|---|---|---|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        sources = "CLINC150" if r["sources"] == ["clinc150"] else f"{len(r['sources'])} sources"
        lines.append(
            f"| {r['name']} | {r.get('objective', 'protomaml')} | {r['train_layers']} | {r['outer_lr']:g} | "
            f"{r['anchor_weight']:g} | {sources} | "
            f"{r['steps']} | "
            f"{100 * r['banking77_train_step0']:.1f} → {100 * r['banking77_train_best']:.1f} ({r['best_step']}) → "
            f"{100 * r['banking77_train_last']:.1f} | {100 * r['heldout_step0']:.1f} → {100 * r['heldout_best']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--out", default="bench/results/gpu_meta_train.json")
    args = parser.parse_args()
    rows = [row for path in args.results for row in runs_in(Path(path))]
    table = markdown(rows)
    Path(args.out).write_text(json.dumps({"runs": rows, "markdown": table}, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
