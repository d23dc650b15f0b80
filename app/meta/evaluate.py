"""`fewshot evaluate`: few-shot protocols on a JSONL set with train/test splits (BANKING77 by default).

Protocols (support from the train split, queries from the test split, fixed seeds, the same episodes
for every method):
  (a) N-way K-shot episodes (5-way, K in {1, 5}, 600 episodes, 15 queries per class);
  (b) all-way K-shot, K in {1, 5, 10}, several seeds, the whole test split as queries.
Methods: frozen base + nearest centroid, frozen base + logistic regression, frozen base + the
service's default inner loop, every meta-trained run given with `--run`, and the shipped checkpoint
through the code path of `/adapt` (`app.ml.tenant_fit.fit_tenant` -> `TenantHead.probabilities`).
Imports only the ML core: runs where the service's dependencies (FastAPI, pydantic, redis) are absent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from app.meta.data import Episode, LabeledSet, all_way_episode, cap_per_class, load_jsonl, sample_episode
from app.meta.train import load_algorithm
from app.ml.checkpoint import DELTA_FILE, load_checkpoint
from app.ml.embedder import Embedder, EncoderEmbedder
from app.ml.embedding_cache import CachedEmbedder, EmbeddingLRU, embed_cached
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams, adapt_head, head_logits, prototype_head
from app.ml.loading import load_spec
from app.ml.packaged import SHIPPED_CHECKPOINT
from app.ml.registry import DEFAULT_ENCODER, spec
from app.ml.tenant_fit import OosRule, SupportSet, fit_tenant

EncoderWithInner = tuple[SentenceEncoder, InnerLoopParams]
"""An encoder and the inner loop a method scores it with (no checkpoint folder: that is `LoadedModel`)."""
Scorer = Callable[[Episode], float]


@dataclass
class EvalConfig:
    data: Path
    checkpoint: str = SHIPPED_CHECKPOINT
    runs: list[Path] = field(default_factory=list)
    out_dir: Path = Path("bench/results")
    name: str = "banking77"
    episodes: int = 600
    seeds: int = 5
    n_way: int = 5
    n_query: int = 15
    nway_shots: tuple[int, ...] = (1, 5)
    allway_shots: tuple[int, ...] = (1, 5, 10)
    support_pool: int = 0  # 0 = every train text may be drawn as support
    cache_dir: Path | None = Path("runs/embed-cache")
    logreg_c: float = 10.0
    logreg_iters: int = 100
    base_model: EncoderWithInner | None = None  # injected by tests; default: the service's base encoder
    shipped_model: EncoderWithInner | None = None  # injected by tests; default: load_model(checkpoint)
    plot: bool = True
    encoder: str = DEFAULT_ENCODER  # the tier (app/ml/registry.py) whose frozen base is evaluated


# --- episodes -------------------------------------------------------------------------------------
def build_protocols(train: LabeledSet, test: LabeledSet, cfg: EvalConfig) -> dict[str, list[Episode]]:
    """Fixed, seeded episodes for every protocol."""
    protocols: dict[str, list[Episode]] = {}
    for k in cfg.nway_shots:
        rng = random.Random(1000 + k)
        protocols[f"{cfg.n_way}-way {k}-shot"] = [
            sample_episode(train, cfg.n_way, k, cfg.n_query, rng, query_data=test) for _ in range(cfg.episodes)
        ]
    for k in cfg.allway_shots:
        episodes = [all_way_episode(train, test, k, random.Random(seed)) for seed in range(cfg.seeds)]
        protocols[f"all-way {k}-shot"] = episodes
    return protocols


# --- embeddings -----------------------------------------------------------------------------------
def precomputed_embedder(encoder: SentenceEncoder, groups: Sequence[Sequence[str]], cache_dir: Path | None) -> Embedder:
    """`encoder`'s embeddings of `groups` (e.g. the train and the test texts), each computed once with
    `encoder.embed` (kept on disk), then answered from memory; a text in several groups gets the first's row."""
    cache = EmbeddingLRU(sum(len(texts) for texts in groups))
    for texts in reversed(groups):
        cache.remember(texts, embed_cached(encoder, list(texts), cache_dir))
    return CachedEmbedder(EncoderEmbedder(encoder, batch_size=128), cache)


# --- methods --------------------------------------------------------------------------------------
def _accuracy(logits: torch.Tensor, episode: Episode) -> float:
    return float((logits.argmax(-1) == torch.tensor(episode.query_targets)).float().mean())


def centroid_scorer(embedder: Embedder) -> Scorer:
    def score(episode: Episode) -> float:
        support = embedder.embed(episode.support_texts)
        head = prototype_head(support, torch.tensor(episode.support_targets), episode.n_way)
        return _accuracy(head_logits(embedder.embed(episode.query_texts), head, 1.0), episode)

    return score


def fit_logreg(x: torch.Tensor, y: torch.Tensor, n_classes: int, c: float, max_iter: int = 200) -> torch.Tensor:
    """Multinomial logistic regression (sklearn's objective: C * sum CE + ||W||^2 / 2), LBFGS; returns [W | b]."""
    x = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ w, y) + (w[:-1] ** 2).sum() / (2 * c * len(x))
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def logreg_scorer(embedder: Embedder, c: float, max_iter: int = 100) -> Scorer:
    def score(episode: Episode) -> float:
        support = embedder.embed(episode.support_texts)
        w = fit_logreg(support, torch.tensor(episode.support_targets), episode.n_way, c, max_iter)
        query = embedder.embed(episode.query_texts).double()
        logits = query @ w[:-1] + w[-1]
        return _accuracy(logits, episode)

    return score


def inner_loop_scorer(embedder: Embedder, params: InnerLoopParams) -> Scorer:
    def score(episode: Episode) -> float:
        targets = torch.tensor(episode.support_targets)
        support = embedder.embed(episode.support_texts)
        head = adapt_head(support, targets, episode.n_way, params, differentiable=False)
        return _accuracy(head_logits(embedder.embed(episode.query_texts), head, params.scale), episode)

    return score


def adapt_path_scorer(embedder: Embedder, inner: InnerLoopParams, oos_rule: OosRule | None = None) -> Scorer:
    """Exactly what `/adapt` then `/predict` compute: `fit_tenant` + `TenantHead.probabilities`."""

    def score(episode: Episode) -> float:
        support = SupportSet(list(episode.support_texts), list(episode.labels), list(episode.support_targets))
        head = fit_tenant(support, embedder, inner, oos_rule).head
        return _accuracy(head.probabilities(embedder.embed(episode.query_texts)), episode)

    return score


def algorithm_scorer(embedder: Embedder, folder: Path, dim: int) -> Scorer:
    algorithm = load_algorithm(folder, dim)

    def score(episode: Episode) -> float:
        with torch.no_grad():
            logits = algorithm.logits(
                embedder.embed(episode.support_texts),
                torch.tensor(episode.support_targets),
                embedder.embed(episode.query_texts),
                episode.n_way,
            )
        return _accuracy(logits, episode)

    return score


# --- statistics and reports -----------------------------------------------------------------------
def summarise(values: list[float]) -> dict[str, float]:
    """Mean and half-width of the 95 % confidence interval (Student t)."""
    from scipy import stats

    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return {"mean": mean, "ci95": float("nan"), "n": n}
    half = float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))
    return {"mean": mean, "ci95": half, "n": n}


def paired_differences(
    scores: dict[str, dict[str, list[float]]], reference: str
) -> dict[str, dict[str, dict[str, float]]]:
    """Each method minus `reference`, episode by episode (the same episodes / seeds), summarised."""
    base = scores[reference]
    return {
        method: {p: summarise([a - b for a, b in zip(values, base[p], strict=True)]) for p, values in cells.items()}
        for method, cells in scores.items()
        if method != reference
    }


def markdown_table(results: dict[str, dict[str, dict[str, float]]], protocols: list[str], signed: bool = False) -> str:
    lines = ["| method | " + " | ".join(protocols) + " |", "|---|" + "---:|" * len(protocols)]
    sign = "+" if signed else ""
    for method, cells in results.items():
        row = [
            f"{100 * cells[p]['mean']:{sign}.1f} ± {100 * cells[p]['ci95']:.1f}" if p in cells else ""
            for p in protocols
        ]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[str, float]]], cfg: EvalConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [(f"{cfg.n_way}-way", cfg.nway_shots), ("all-way", cfg.allway_shots)]
    for ax, (prefix, shots) in zip(axes, groups, strict=True):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        for method, cells in results.items():
            keys = [f"{prefix} {k}-shot" for k in shots]
            if not all(k in cells for k in keys):
                continue
            means = [100 * cells[k]["mean"] for k in keys]
            errs = [100 * cells[k]["ci95"] for k in keys]
            ax.errorbar(list(shots), means, yerr=errs, marker="o", capsize=3, label=method)
        ax.set_title(f"{cfg.name}: {prefix} K-shot")
        ax.set_xlabel("shots per class (K)")
        ax.set_ylabel("query accuracy (%)")
        ax.set_xticks(list(shots))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- driver ---------------------------------------------------------------------------------------
def _load(checkpoint: str | None, encoder: str = DEFAULT_ENCODER) -> EncoderWithInner:
    """The tier's registered base encoder (+ `checkpoint`), in float32 everywhere: results do not depend on the CPU
    (bf16 serving is measured by bench/cpu_speedups.py). Without a checkpoint: the tier's default inner loop."""
    folder = None if checkpoint is None or checkpoint.strip().lower() in {"", "none"} else Path(checkpoint)
    loaded = load_spec(dataclasses.replace(spec(encoder), checkpoint=folder), precision="float32")
    return loaded.encoder, loaded.inner


def encoder_tensors(folder: Path) -> list[str]:
    """Names of the encoder tensors a checkpoint changes (empty: the base encoder as is)."""
    from safetensors import safe_open

    with safe_open(str(folder / DELTA_FILE), framework="pt") as handle:
        return [key for key in handle.keys() if key.startswith("encoder.")]  # noqa: SIM118


def _run_label(folder: Path) -> tuple[str, bool]:
    manifest = json.loads((folder / "manifest.json").read_text())
    layers = manifest["config"].get("train_layers")
    trained = bool(manifest.get("trained_encoder_prefixes"))
    what = "frozen encoder, inner/metric params meta-trained" if not trained else f"top-{layers} layers meta-trained"
    if layers == "norm":
        what = "last LayerNorm + inner-loop params meta-trained"
    if layers == "bias":
        what = "biases + LayerNorms (BitFit) meta-trained"
    if manifest.get("serves_via_adapt") and manifest["algorithm"] != "protonet":
        what += f", {manifest['inner_loop']['steps']} inner steps"
    written_then_steps = (manifest["config"].get("algorithm_options") or {}).get("inner_steps")
    if manifest["algorithm"] == "metanet" and written_then_steps:
        what += f", then {written_then_steps} inner steps"
    return f"{manifest['algorithm']} ({what})", trained


def load_splits(cfg: EvalConfig) -> tuple[LabeledSet, LabeledSet]:
    """(support pool, queries): the train split (capped per class with `support_pool`) and the test split."""
    train = load_jsonl(cfg.data, ["train"])
    test = load_jsonl(cfg.data, ["test"])
    if cfg.support_pool:
        train = cap_per_class(train, cfg.support_pool, seed=0)
    return train, test


def _describe(inner: InnerLoopParams) -> str:
    return f"{inner.steps} steps, lr {float(inner.lr_weight):g}, scale {float(inner.scale):g}"


def base_methods(base: EncoderWithInner, base_embedder: Embedder, cfg: EvalConfig) -> tuple[dict[str, Scorer], str]:
    """The frozen base encoder's methods, and the name of the one the paired differences refer to."""
    reference = f"frozen base + /adapt inner loop ({_describe(base[1])})"
    methods = {
        "frozen base + nearest centroid": centroid_scorer(base_embedder),
        "frozen base + logistic regression": logreg_scorer(base_embedder, cfg.logreg_c, cfg.logreg_iters),
        reference: adapt_path_scorer(base_embedder, base[1]),
    }
    return methods, reference


def run_methods(
    base: EncoderWithInner, base_embedder: Embedder, texts: list[list[str]], cfg: EvalConfig
) -> dict[str, Scorer]:
    """Every `--run` folder through its own algorithm (on its trained encoder when it changed one)."""
    methods: dict[str, Scorer] = {}
    for folder in cfg.runs:
        label, trained = _run_label(folder)
        embedder = base_embedder
        if trained:
            encoder = _load(None, cfg.encoder)[0] if cfg.base_model is None else base[0]
            load_checkpoint(folder, encoder)
            embedder = precomputed_embedder(encoder, texts, cfg.cache_dir)
        if label in methods:  # two runs of one kind: tell them apart by the run's folder
            label = f"{label} [{folder.parent.name}]"
        methods[label] = algorithm_scorer(embedder, folder, base[0].dim)
    return methods


def shipped_methods(base_embedder: Embedder, texts: list[list[str]], cfg: EvalConfig) -> dict[str, Scorer]:
    """The shipped checkpoint via `/adapt` (plus centroid and logistic regression when it changed the encoder)."""
    if cfg.shipped_model is None and cfg.checkpoint.lower() == "none":
        return {}
    shipped = cfg.shipped_model or _load(cfg.checkpoint, cfg.encoder)
    if cfg.shipped_model is None and not encoder_tensors(Path(cfg.checkpoint)):
        embedder = base_embedder  # same weights as the base: same embeddings, no need to recompute
    else:
        embedder = precomputed_embedder(shipped[0], texts, cfg.cache_dir)
    label = checkpoint_label(cfg.checkpoint, injected=cfg.shipped_model is not None)
    methods: dict[str, Scorer] = {}
    if embedder is not base_embedder:  # otherwise these equal the frozen-base rows
        methods[f"{label} + nearest centroid"] = centroid_scorer(embedder)
        methods[f"{label} + logistic regression"] = logreg_scorer(embedder, cfg.logreg_c, cfg.logreg_iters)
    methods[f"**{label} via /adapt**"] = adapt_path_scorer(embedder, shipped[1])
    return methods


def checkpoint_label(checkpoint: str, injected: bool = False) -> str:
    """How the report names `--checkpoint`'s rows: "shipped checkpoint" for the one that ships (or a model a
    test injects in its place), else "checkpoint <folder>", so a candidate is never mistaken for it."""
    if injected or Path(checkpoint).resolve() == Path(SHIPPED_CHECKPOINT).resolve():
        return "shipped checkpoint"
    return f"checkpoint {checkpoint}"


def score_methods(methods: dict[str, Scorer], protocols: dict[str, list[Episode]]) -> dict[str, dict[str, list[float]]]:
    """Every method on every episode of every protocol."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-episode ops: one thread is faster and immune to CPU contention
    try:
        return {
            method: {protocol: [scorer(e) for e in episodes] for protocol, episodes in protocols.items()}
            for method, scorer in methods.items()
        }
    finally:
        torch.set_num_threads(threads)


def write_report(
    cfg: EvalConfig,
    protocols: dict[str, list[Episode]],
    scores: dict[str, dict[str, list[float]]],
    reference: str,
) -> dict[str, Any]:
    """Summaries and paired differences, written to eval_<name>.json / .md / .png under `cfg.out_dir`."""
    results = {m: {p: summarise(values) for p, values in cells.items()} for m, cells in scores.items()}
    paired = paired_differences(scores, reference)
    order = list(protocols)
    table_md = markdown_table(results, order)
    paired_md = markdown_table(paired, order, signed=True)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    stem = cfg.out_dir / f"eval_{cfg.name}"
    payload = {
        "data": str(cfg.data),
        "protocols": {
            p: {"episodes": len(e), "queries_per_episode": len(e[0].query_texts), "n_way": e[0].n_way}
            for p, e in protocols.items()
        },
        "support_pool_per_class": cfg.support_pool or "all",
        "checkpoint": cfg.checkpoint,
        "runs": [str(r) for r in cfg.runs],
        "results": results,
        "paired_difference_reference": reference,
        "paired_differences": paired,
        "scores": {m: {p: [round(v, 6) for v in values] for p, values in cells.items()} for m, cells in scores.items()},
    }
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    stem.with_suffix(".md").write_text(
        f"Accuracy (%) on {cfg.name}, mean ± 95 % CI (Student t over episodes / seeds).\n\n{table_md}\n\n"
        f"Paired difference to `{reference}` (points; the same episodes / seeds, 95 % CI of the mean "
        f"difference):\n\n{paired_md}\n"
    )
    if cfg.plot:
        plot(results, cfg, stem.with_suffix(".png"))
    return {"markdown": f"{table_md}\n\npaired difference to {reference}:\n\n{paired_md}", **payload}


def run_evaluation(cfg: EvalConfig) -> dict[str, Any]:
    """Score every method on every protocol; write eval_<name>.json / .md / .png under `cfg.out_dir`."""
    torch.manual_seed(0)
    train, test = load_splits(cfg)
    protocols = build_protocols(train, test, cfg)
    texts = [[t for t, _ in train.pairs()], [t for t, _ in test.pairs()]]
    base = cfg.base_model or _load(None, cfg.encoder)
    base_embedder = precomputed_embedder(base[0], texts, cfg.cache_dir)
    methods, reference = base_methods(base, base_embedder, cfg)
    methods |= run_methods(base, base_embedder, texts, cfg)
    methods |= shipped_methods(base_embedder, texts, cfg)
    return write_report(cfg, protocols, score_methods(methods, protocols), reference)
