"""Multi-label meta-training and evaluation (`fewshot meta-train-multilabel`, `fewshot evaluate --task multi_label`).

Protocol (docs/multilabel.md): K examples per label from the train split (`sample_k_per_label`: a text drawn
for one label keeps all its labels), the test split as queries, seeds 0..S-1; micro-F1, macro-F1, exact match.

Meta-training learns the one-vs-rest inner loop's `log_scale`, `lr_weight` and `lr_bias` (three scalars) by
back-propagating a query loss through `adapt_head(..., differentiable=True)` on episodes drawn from a
multi-label train split, with the checkpoint's encoder frozen (embeddings precomputed). The query loss is the
served rule's: each episode's decision (thresholds, top-label rule) is fitted on its support exactly as `/adapt`
fits it (`thresholds.fit_decision`, held fixed), and the loss is 1 - the soft micro-F1 of that decision relaxed
(`multilabel_decision.soft_decision`). It keeps the learned
values only when they beat the starting ones on the validation split through the `/adapt` path.
Imports only the ML core.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from app.meta.evaluate import precomputed_embedder
from app.meta.multilabel_data import MultiLabelRows, load_multilabel, multi_hot, multilabel_metrics, sample_k_per_label
from app.ml.checkpoint import save_multilabel_inner
from app.ml.embedder import Embedder
from app.ml.encoder import SentenceEncoder
from app.ml.label_names import LabelNamesMode, apply_label_names
from app.ml.learner import InnerLoopParams, adapt_head, head_logits
from app.ml.loading import load_model, multi_label_inner_loop
from app.ml.multilabel_decision import soft_decision, soft_f1_loss
from app.ml.packaged import SHIPPED_CHECKPOINT
from app.ml.tenant_fit import SupportSet, fit_tenant, held_out_scores
from app.ml.thresholds import Decision, ThresholdRule, fit_decision

Predictor = Callable[[MultiLabelRows, list[str]], torch.Tensor]  # (support, labels) -> 0/1 predictions on the queries


# --- the /adapt path and the anchor ---------------------------------------------------------------------------
def support_set(rows: MultiLabelRows, labels: list[str]) -> SupportSet:
    """Sampled rows as the validated support set `/adapt` builds for a multi-label tenant."""
    index = {label: i for i, label in enumerate(labels)}
    label_sets = [tuple(index[label] for label in row) for row in rows.label_sets]
    return SupportSet(list(rows.texts), list(labels), [], label_sets=label_sets)


def adapt_path_predictor(
    embedder: Embedder, inner: InnerLoopParams, queries: list[str], label_names: LabelNamesMode = "auto"
) -> Predictor:
    """The label-names decision and `fit_tenant` (what `/adapt` runs), then the served decision
    (`TenantHead.applying`)."""
    query_embeddings = embedder.embed(queries)

    def predict(rows: MultiLabelRows, labels: list[str]) -> torch.Tensor:
        fitted, _ = apply_label_names(support_set(rows, labels), label_names, embedder.embed, inner)
        head = fit_tenant(fitted, embedder, inner).head
        return head.applying(head.scores(query_embeddings)).float()

    return predict


def fit_ovr_logreg(x: torch.Tensor, y: torch.Tensor, c: float = 1.0, max_iter: int = 200) -> torch.Tensor:
    """One-vs-rest logistic regression with class-balanced weights (sklearn's `class_weight="balanced"`:
    `n / (2 n_pos)` per positive, `n / (2 n_neg)` per negative), objective `C * sum(w * log-loss) + ||W||^2 / 2`
    (intercepts not penalised), LBFGS in float64; returns `[W | b]` `[dim + 1, c]`."""
    x = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    y = y.double()
    n = len(y)
    n_pos = y.sum(dim=0).clamp(min=1)
    n_neg = (n - y.sum(dim=0)).clamp(min=1)
    weights = y * (n / (2 * n_pos)) + (1 - y) * (n / (2 * n_neg))
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        entries = F.binary_cross_entropy_with_logits(x @ w, y, weight=weights, reduction="sum")
        loss = c * entries + (w[:-1] ** 2).sum() / 2
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def logreg_predictor(embedder: Embedder, queries: list[str]) -> Predictor:
    """Frozen encoder + one-vs-rest logistic regression (class-balanced), decision at probability 0.5; a label
    whose support holds only positives (or none) is predicted constant."""
    query_embeddings = embedder.embed(queries).double()

    def predict(rows: MultiLabelRows, labels: list[str]) -> torch.Tensor:
        y = multi_hot(rows.label_sets, labels)
        w = fit_ovr_logreg(embedder.embed(rows.texts), y)
        predicted = (query_embeddings @ w[:-1] + w[-1] >= 0).float()
        constant = (y.sum(dim=0) == 0) | (y.sum(dim=0) == len(y))
        return torch.where(constant, (y.sum(dim=0) > 0).float().expand_as(predicted), predicted)

    return predict


# --- evaluation -----------------------------------------------------------------------------------------------
@dataclass
class MultiLabelEvalConfig:
    data_dir: Path
    sets: tuple[str, ...] = ("mixsnips", "goemotions_multilabel")
    shots: tuple[int, ...] = (4, 8, 16)
    seeds: int = 5
    checkpoint: str = SHIPPED_CHECKPOINT
    out: Path = Path("bench/results/eval_multilabel.json")
    cache_dir: Path | None = Path("runs/embed-cache")
    split: str = "test"  # `val` for tuning: the test split is for reporting only
    label_names: LabelNamesMode = "auto"  # the /adapt path's `label_names`


def _methods(cfg: MultiLabelEvalConfig, texts: list[list[str]], queries: list[str]) -> dict[str, Predictor]:
    base = load_model(None).encoder
    base_embedder = precomputed_embedder(base, texts, cfg.cache_dir)
    methods = {
        "frozen base + OvR logistic regression (balanced)": logreg_predictor(base_embedder, queries),
        "frozen base + multi-label inner loop": adapt_path_predictor(
            base_embedder, multi_label_inner_loop(None), queries, cfg.label_names
        ),
    }
    if cfg.checkpoint != "none":
        folder = Path(cfg.checkpoint)
        shipped = precomputed_embedder(load_model(folder).encoder, texts, cfg.cache_dir)
        methods[f"{folder.name} (/adapt path)"] = adapt_path_predictor(
            shipped, multi_label_inner_loop(folder), queries, cfg.label_names
        )
    return methods


def run_multilabel_evaluation(cfg: MultiLabelEvalConfig) -> dict[str, Any]:
    """Every method on the same support sets; per (set, K): mean and std over seeds, and the paired difference
    of the shipped /adapt path over the logistic-regression anchor."""
    results: dict[str, Any] = {"config": {k: str(v) for k, v in asdict(cfg).items()}, "sets": {}}
    for name in cfg.sets:
        path = cfg.data_dir / f"{name}.jsonl"
        train, test = load_multilabel(path, ["train"]), load_multilabel(path, [cfg.split])
        labels = train.labels
        truth = multi_hot(test.label_sets, labels)
        supports = {(k, seed): sample_k_per_label(train, k, seed) for k in cfg.shots for seed in range(cfg.seeds)}
        support_texts = sorted({t for rows in supports.values() for t in rows.texts})
        methods = _methods(cfg, [support_texts, test.texts], test.texts)
        per_set: dict[str, Any] = {}
        for method, predict in methods.items():
            for (k, seed), rows in supports.items():
                started = time.perf_counter()
                predicted = predict(rows, labels)
                scores = multilabel_metrics(predicted, truth) | {"seconds": time.perf_counter() - started}
                per_set.setdefault(method, {}).setdefault(f"K={k}", []).append(
                    scores | {"seed": seed, "n_support": len(rows)}
                )
        results["sets"][name] = {
            "n_labels": len(labels),
            "n_test": len(test),
            "runs": per_set,
            "summary": _summarise(per_set),
        }
        print(markdown_table(name, results["sets"][name]["summary"]), flush=True)
    results["markdown"] = "\n\n".join(markdown_table(n, s["summary"]) for n, s in results["sets"].items())
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


def _summarise(per_set: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, dict[str, dict[str, float]]]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method, by_k in per_set.items():
        for k, runs in by_k.items():
            row = {}
            for metric in ("micro_f1", "macro_f1", "exact_match"):
                values = torch.tensor([run[metric] for run in runs])
                row[metric] = round(100 * float(values.mean()), 2)
                row[f"{metric}_std"] = round(100 * float(values.std()) if len(values) > 1 else 0.0, 2)
            summary.setdefault(method, {})[k] = row
    return summary


def markdown_table(name: str, summary: dict[str, dict[str, dict[str, float]]]) -> str:
    shots = sorted({k for by_k in summary.values() for k in by_k}, key=lambda k: int(k.split("=")[1]))
    header = f"| {name} | " + " | ".join(f"{k} micro-F1 / macro-F1 / exact" for k in shots) + " |"
    lines = [header, "|---|" + "---|" * len(shots)]
    for method, by_k in summary.items():
        cells = [_cell(by_k[k]) for k in shots]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: dict[str, float]) -> str:
    return f"{row['micro_f1']:.1f} ± {row['micro_f1_std']:.1f} / {row['macro_f1']:.1f} / {row['exact_match']:.1f}"


# --- meta-training --------------------------------------------------------------------------------------------
@dataclass
class MultiLabelMetaConfig:
    data_dir: Path
    source: str = "goemotions_multilabel"  # Apache-2.0: a shipped checkpoint may be trained on it
    checkpoint: str = SHIPPED_CHECKPOINT
    pool: int = 6000  # train texts embedded once (first rows of the split)
    shots: tuple[int, ...] = (4, 8, 16)
    n_query: int = 128
    outer_steps: int = 120
    outer_lr: float = 0.02
    select_shots: int = 8
    select_seeds: int = 5
    seed: int = 0
    cache_dir: Path | None = Path("runs/embed-cache")
    write: bool = True  # save the winner into the checkpoint folder
    history: list[dict[str, float]] = field(default_factory=list)


def _episode(
    rows: MultiLabelRows, labels: list[str], k: int, n_query: int, rng: random.Random
) -> tuple[list[int], list[int]]:
    support = sample_k_per_label(rows, k, rng.randrange(1 << 30))
    chosen = set(support.texts)
    index = {text: i for i, text in enumerate(rows.texts)}
    rest = [i for i, text in enumerate(rows.texts) if text not in chosen]
    return [index[t] for t in support.texts], rng.sample(rest, min(n_query, len(rest)))


def validation_micro_f1(
    embedder: Embedder, inner: InnerLoopParams, train: MultiLabelRows, val: MultiLabelRows, k: int, seeds: int
) -> float:
    """Mean micro-F1 of the /adapt path on the validation split (the selection criterion)."""
    labels = train.labels
    predict = adapt_path_predictor(embedder, inner, val.texts)
    truth = multi_hot(val.label_sets, labels)
    return (
        sum(
            multilabel_metrics(predict(sample_k_per_label(train, k, s), labels), truth)["micro_f1"]
            for s in range(seeds)
        )
        / seeds
    )


def meta_train_multilabel(cfg: MultiLabelMetaConfig, encoder: SentenceEncoder | None = None) -> dict[str, Any]:
    """Learn the multi-label inner loop's three scalars; returns a summary (and writes the checkpoint file)."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    folder = Path(cfg.checkpoint)
    encoder = encoder or load_model(folder).encoder
    path = cfg.data_dir / f"{cfg.source}.jsonl"
    full_train = load_multilabel(path, ["train"])
    train = MultiLabelRows(full_train.name, full_train.texts[: cfg.pool], full_train.label_sets[: cfg.pool])
    val = load_multilabel(path, ["val"])
    labels = full_train.labels
    embedder = precomputed_embedder(encoder, [train.texts, val.texts], cfg.cache_dir)
    x = embedder.embed(train.texts)
    y = multi_hot(train.label_sets, labels)

    start = multi_label_inner_loop(None)
    learned = InnerLoopParams(
        steps=start.steps,
        lr_weight=start.lr_weight.clone().log().requires_grad_(),  # optimised in log space: rates stay positive
        lr_bias=start.lr_bias.clone().log().requires_grad_(),
        log_scale=start.log_scale.clone().requires_grad_(),
    )
    optimizer = torch.optim.Adam([learned.lr_weight, learned.lr_bias, learned.log_scale], lr=cfg.outer_lr)
    began = time.perf_counter()
    for step in range(cfg.outer_steps):
        support, query = _episode(train, labels, rng.choice(cfg.shots), cfg.n_query, rng)
        params = InnerLoopParams(start.steps, learned.lr_weight.exp(), learned.lr_bias.exp(), learned.log_scale)
        decision = episode_decision(x[support], y[support], params)
        head = adapt_head(x[support], y[support], len(labels), params, differentiable=True)
        loss = served_rule_loss(head_logits(x[query], head, params.scale), y[query], decision)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == cfg.outer_steps - 1:
            entry = {"step": step, "query_loss": float(loss.detach()), **_scalars(params)}
            cfg.history.append(entry)
            print(json.dumps(entry), flush=True)
    final = InnerLoopParams(
        start.steps, learned.lr_weight.detach().exp(), learned.lr_bias.detach().exp(), learned.log_scale.detach()
    )
    before = validation_micro_f1(embedder, start, full_train, val, cfg.select_shots, cfg.select_seeds)
    after = validation_micro_f1(embedder, final, full_train, val, cfg.select_shots, cfg.select_seeds)
    winner = final if after > before else start
    summary = {
        "source": cfg.source,
        "start": _scalars(start),
        "learned": _scalars(final),
        "val_micro_f1": {"start": round(100 * before, 2), "learned": round(100 * after, 2)},
        "kept": "learned" if winner is final else "start",
        "outer_steps": cfg.outer_steps,
        "seconds": round(time.perf_counter() - began, 1),
    }
    if cfg.write:
        save_multilabel_inner(folder, winner, {"trained_on": f"{cfg.source} train (first {cfg.pool} rows)", **summary})
    return summary | {"history": cfg.history}


def episode_decision(x: torch.Tensor, y: torch.Tensor, params: InnerLoopParams) -> Decision:
    """The decision `/adapt` would serve for this support set (`fit_multilabel`'s), without gradients."""
    fixed = InnerLoopParams(params.steps, params.lr_weight.detach(), params.lr_bias.detach(), params.log_scale.detach())
    rule = ThresholdRule()
    x = x.detach()
    held = held_out_scores(x, y, len(y), fixed, rule)
    return fit_decision(held.scores, y, held.valid, rule)


def served_rule_loss(logits: torch.Tensor, targets: torch.Tensor, decision: Decision) -> torch.Tensor:
    """1 - soft micro-F1 of the served decision rule (relaxed) on query logits `[n, c]`."""
    return soft_f1_loss(soft_decision(logits, decision.thresholds, decision.min_labels), targets)


def _scalars(params: InnerLoopParams) -> dict[str, float]:
    return {
        "lr_weight": round(float(params.lr_weight.detach()), 5),
        "lr_bias": round(float(params.lr_bias.detach()), 5),
        "scale": round(float(params.scale.detach()), 4),
        "steps": params.steps,
    }
