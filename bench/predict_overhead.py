"""CPU time of one one-text `/predict` in the ASGI application itself, the encoder pass left out.

The real app (embedded defaults, a 77-label BANKING77 tenant) is called in-process through its ASGI interface
with a complete request; the tenant's micro-batcher await is replaced by one that returns a fixed embedding, so
what is timed is everything the event loop does for a request besides the encoder: middleware, routing,
validation, dependencies, the cached head's maths, the reply, metrics and the access log. HTTP parsing (uvicorn)
is not included: `bench.wrk_load` measures the whole server.

    .venv/bin/python -m bench.predict_overhead --out bench/results/predict_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import torch

from app.config import Settings
from app.meta.data import load_jsonl
from app.web.app import create_app
from bench.common.data import add_data_option
from bench.common.results import print_table, write_json
from bench.common.support import n_way_k_shot
from harness.asgi import http_scope


async def measure(data: Path, requests: int, repeats: int) -> dict[str, Any]:
    app = create_app(Settings(_env_file=None, log_level="warning"))
    async with app.router.lifespan_context(app):
        banking = data / "banking77.jsonl"
        train = load_jsonl(banking, ["train"]).by_label
        support = n_way_k_shot(train, len(train), 5, random.Random(0))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            (await client.post("/adapt", json={"tenant_id": "t0", "examples": support})).raise_for_status()
        prediction = app.state.runtime.tiers.default.prediction
        fixed = prediction.context.embedder.embed(["I lost my card yesterday"])

        async def no_encoder(texts: list[str]) -> torch.Tensor:
            return fixed.expand(len(texts), -1)

        prediction.context = replace(prediction.context, embed_async=no_encoder)
        body = json.dumps({"tenant_id": "t0", "texts": ["I lost my card yesterday"]}).encode()
        headers = [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        statuses: list[int] = []

        async def one() -> None:
            delivered = False

            async def receive() -> dict[str, Any]:
                nonlocal delivered
                if delivered:
                    await asyncio.Event().wait()  # the client stays connected
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(http_scope("POST", "/predict", headers, server=("bench", 80)), receive, send)

        for _ in range(200):
            await one()
        runs = []
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(requests):
                await one()
            runs.append(
                {
                    "wall_us": 1e6 * (time.perf_counter() - wall) / requests,
                    "cpu_us": 1e6 * (time.process_time() - cpu) / requests,
                }
            )
        assert set(statuses) == {200}, statuses[:5]
    return {
        "requests_per_run": requests,
        "runs": runs,
        "best_cpu_us": min(r["cpu_us"] for r in runs),
        "median_cpu_us": statistics.median(r["cpu_us"] for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/predict_overhead.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.data, args.requests, args.repeats))
    write_json(args.out, result)
    print_table(
        ["measure", "us per one-text /predict"],
        [["CPU, best run", f"{result['best_cpu_us']:.0f}"], ["CPU, median run", f"{result['median_cpu_us']:.0f}"]],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
