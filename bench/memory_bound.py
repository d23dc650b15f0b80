"""Peak memory of a maximum-size /adapt and /predict (the request limits in settings), in one process.

    .venv/bin/python -m bench.memory_bound                       # default limits (FEWSHOT_* env vars apply)
    .venv/bin/python -m bench.memory_bound --max-examples 256    # override a limit

Runs the app in-process (real encoder, in-process store), warms it up with a small request, then samples the
process RSS every 2 ms while one request of the largest allowed size runs: every example/text at
`max_text_chars` characters, `max_labels` labels of `max_label_chars` characters. Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.bootstrap import load_model
from app.config import Settings
from app.web.app import create_app
from bench.common.results import write_json
from harness.memory import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("max_examples", "max_labels", "max_texts", "max_text_chars", "max_label_chars"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory_bound.json"))
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if k.startswith("max_") and v is not None}
    settings = Settings(store="memory", log_level="warning", **overrides)
    model = load_model(settings)
    result = measure(create_app(settings, model=model), settings)
    print(json.dumps(result, indent=2))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
