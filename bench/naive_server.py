"""The usual hand-rolled service, for comparison: one FastAPI handler calling `SentenceTransformer.encode`
per request, nearest-centroid labels, tenants in a dict. Not part of the product.

    .venv/bin/python -m bench.naive_server --port 8100
"""

from __future__ import annotations

import argparse

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

from app.config import PACKAGED_ENCODER
from app.ml.encoder import resolve_source


class Example(BaseModel):
    text: str
    label: str


class AdaptBody(BaseModel):
    tenant_id: str
    examples: list[Example]


class PredictBody(BaseModel):
    tenant_id: str
    texts: list[str]


def build_app() -> FastAPI:
    model = SentenceTransformer(str(resolve_source(PACKAGED_ENCODER)), device="cpu")
    tenants: dict[str, tuple[list[str], np.ndarray]] = {}
    app = FastAPI()

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/adapt")
    def adapt(body: AdaptBody) -> dict[str, object]:
        embeddings = model.encode([e.text for e in body.examples], normalize_embeddings=True)
        labels = sorted({e.label for e in body.examples})
        centroids = np.stack([embeddings[[e.label == label for e in body.examples]].mean(axis=0) for label in labels])
        tenants[body.tenant_id] = (labels, centroids)
        return {"tenant_id": body.tenant_id, "labels": labels}

    @app.post("/predict")
    def predict(body: PredictBody) -> dict[str, object]:
        labels, centroids = tenants[body.tenant_id]
        scores = model.encode(body.texts, normalize_embeddings=True) @ centroids.T
        return {"predictions": [{"label": labels[int(i)]} for i in scores.argmax(axis=1)]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
