"""`fewshot evaluate`: few-shot protocols on a JSONL set with train/test splits (BANKING77 by default).

Protocols (support from the train split, queries from the test split, fixed seeds, the same episodes
for every method):
  (a) N-way K-shot episodes (5-way, K in {1, 5}, 600 episodes, 15 queries per class);
  (b) all-way K-shot, K in {1, 5, 10}, several seeds, the whole test split as queries.
Methods: frozen base + nearest centroid, frozen base + logistic regression, frozen base + the
service's default inner loop, every meta-trained run given with `--run`, and the shipped checkpoint
through the code path of `/adapt` (`AdaptationService.fit` -> `TenantHead.probabilities`).
"""

from __future__ import annotations

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

from app.config import Settings
from app.meta.data import Episode, LabeledSet, all_way_episode, cap_per_class, load_jsonl, sample_episode
from app.meta.embed_cache import embed_cached
from app.meta.train import load_algorithm
from app.ml.encoder import SentenceEncoder
from app.ml.learner import InnerLoopParams, adapt_head, head_logits, prototype_head
from app.services.adaptation import AdaptationService, Limits, SupportSet
from app.store.memory import MemoryStore

Model = tuple[SentenceEncoder, InnerLoopParams]
Scorer = Callable[[Episode], float]


@dataclass
class EvalConfig:
    data: Path
    checkpoint: str = "models/minilm-protomaml"
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
    base_model: Model | None = None  # injected by tests; default: the service's base encoder
    shipped_model: Model | None = None  # injected by tests; default: load_model(checkpoint)
    plot: bool = True


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
class EmbeddingTable:
    """Text -> embedding of one encoder, computed once with `encoder.embed` (memoised on disk)."""

    def __init__(self, encoder: SentenceEncoder, groups: Sequence[Sequence[str]], cache_dir: Path | None) -> None:
        """`groups` (e.g. the train and the test texts) are embedded and cached separately."""
        self.encoder = encoder
        self.rows: dict[str, int] = {}
        parts = []
        for texts in groups:
            offset = sum(len(p) for p in parts)
            parts.append(embed_cached(encoder, list(texts), cache_dir))
            for i, text in enumerate(texts):
                self.rows.setdefault(text, offset + i)
        self.matrix = torch.cat(parts)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return self.matrix[[self.rows[t] for t in texts]]


class MemoisedEncoder:
    """Stands in for the encoder inside `AdaptationService.fit`: `embed` returns what `encoder.embed`
    returned for the same texts (precomputed), so that 600 episodes do not re-embed their supports."""

    def __init__(self, table: EmbeddingTable) -> None:
        self.table = table
        self.fingerprint = table.encoder.fingerprint

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        return self.table(texts)


# --- methods --------------------------------------------------------------------------------------
def _accuracy(logits: torch.Tensor, episode: Episode) -> float:
    return float((logits.argmax(-1) == torch.tensor(episode.query_targets)).float().mean())


def centroid_scorer(table: EmbeddingTable) -> Scorer:
    def score(episode: Episode) -> float:
        head = prototype_head(table(episode.support_texts), torch.tensor(episode.support_targets), episode.n_way)
        return _accuracy(head_logits(table(episode.query_texts), head, 1.0), episode)

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


def logreg_scorer(table: EmbeddingTable, c: float, max_iter: int = 100) -> Scorer:
    def score(episode: Episode) -> float:
        w = fit_logreg(table(episode.support_texts), torch.tensor(episode.support_targets), episode.n_way, c, max_iter)
        query = table(episode.query_texts).double()
        logits = query @ w[:-1] + w[-1]
        return _accuracy(logits, episode)

    return score


def inner_loop_scorer(table: EmbeddingTable, params: InnerLoopParams) -> Scorer:
    def score(episode: Episode) -> float:
        targets = torch.tensor(episode.support_targets)
        head = adapt_head(table(episode.support_texts), targets, episode.n_way, params, differentiable=False)
        return _accuracy(head_logits(table(episode.query_texts), head, params.scale), episode)

    return score


def adapt_path_scorer(table: EmbeddingTable, inner: InnerLoopParams, memoise: bool = True) -> Scorer:
    """Exactly what `/adapt` then `/predict` compute: `AdaptationService.fit` + `TenantHead.probabilities`."""
    encoder: Any = MemoisedEncoder(table) if memoise else table.encoder
    service = AdaptationService(encoder, inner, MemoryStore(), Limits(max_examples=100_000, max_labels=10_000))

    def score(episode: Episode) -> float:
        support = SupportSet(list(episode.support_texts), list(episode.labels), list(episode.support_targets))
        head = service.fit(support, inner.steps)[0]
        return _accuracy(head.probabilities(table(episode.query_texts)), episode)

    return score


def algorithm_scorer(table: EmbeddingTable, folder: Path) -> Scorer:
    algorithm = load_algorithm(folder, table.matrix.shape[1])

    def score(episode: Episode) -> float:
        with torch.no_grad():
            logits = algorithm.logits(
                table(episode.support_texts),
                torch.tensor(episode.support_targets),
                table(episode.query_texts),
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
def _load(checkpoint: str | None) -> Model:
    from app.services.runtime import load_model

    # float32 everywhere: results do not depend on the CPU (bf16 serving is measured by bench/cpu_speedups.py)
    settings = Settings(checkpoint=checkpoint or "none", encoder_precision="float32", _env_file=None)
    encoder, inner, _ = load_model(settings)
    return encoder, inner


def encoder_tensors(folder: Path) -> list[str]:
    """Names of the encoder tensors a checkpoint changes (empty: the base encoder as is)."""
    from safetensors import safe_open

    from app.ml.checkpoint import DELTA_FILE

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
    return f"{manifest['algorithm']} ({what})", trained


def run_evaluation(cfg: EvalConfig) -> dict[str, Any]:
    """Score every method on every protocol; write eval_<name>.json / .md / .png under `cfg.out_dir`."""
    torch.manual_seed(0)
    train = load_jsonl(cfg.data, ["train"])
    test = load_jsonl(cfg.data, ["test"])
    if cfg.support_pool:
        train = cap_per_class(train, cfg.support_pool, seed=0)
    protocols = build_protocols(train, test, cfg)
    texts = [[t for t, _ in train.pairs()], [t for t, _ in test.pairs()]]

    base = cfg.base_model or _load(None)
    base_table = EmbeddingTable(base[0], texts, cfg.cache_dir)
    defaults = base[1]
    default_desc = f"{defaults.steps} steps, lr {float(defaults.lr_weight):g}, scale {float(defaults.scale):g}"
    methods: dict[str, Scorer] = {
        "frozen base + nearest centroid": centroid_scorer(base_table),
        "frozen base + logistic regression": logreg_scorer(base_table, cfg.logreg_c, cfg.logreg_iters),
        f"frozen base + /adapt inner loop ({default_desc})": adapt_path_scorer(base_table, defaults),
    }
    for folder in cfg.runs:
        label, trained = _run_label(folder)
        table = base_table
        if trained:
            encoder = _load(None)[0] if cfg.base_model is None else base[0]
            from app.ml.checkpoint import load_checkpoint

            load_checkpoint(folder, encoder)
            table = EmbeddingTable(encoder, texts, cfg.cache_dir)
        methods[label] = algorithm_scorer(table, folder)
    if cfg.shipped_model is not None or cfg.checkpoint.lower() != "none":
        shipped = cfg.shipped_model or _load(cfg.checkpoint)
        if cfg.shipped_model is None and not encoder_tensors(Path(cfg.checkpoint)):
            shipped_table = base_table  # same weights as the base: same embeddings, no need to recompute
        else:
            shipped_table = EmbeddingTable(shipped[0], texts, cfg.cache_dir)
        if shipped_table is not base_table:  # otherwise these equal the frozen-base rows
            methods["shipped checkpoint + nearest centroid"] = centroid_scorer(shipped_table)
            logreg = logreg_scorer(shipped_table, cfg.logreg_c, cfg.logreg_iters)
            methods["shipped checkpoint + logistic regression"] = logreg
        methods["**shipped checkpoint via /adapt**"] = adapt_path_scorer(shipped_table, shipped[1])

    scores: dict[str, dict[str, list[float]]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-episode ops: one thread is faster and immune to CPU contention
    try:
        for method, scorer in methods.items():
            scores[method] = {protocol: [scorer(e) for e in episodes] for protocol, episodes in protocols.items()}
    finally:
        torch.set_num_threads(threads)
    results = {m: {p: summarise(values) for p, values in cells.items()} for m, cells in scores.items()}
    reference = f"frozen base + /adapt inner loop ({default_desc})"
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
