"""Episodic meta-training loop: mixture of sources -> episodes -> algorithm loss -> outer step.

Validation runs on held-out classes of the meta-training sources (and, for model selection only,
optionally on BANKING77's *train* split); early stopping on the selection metric; resumable state
in `runs/<name>/state`; the best model in `runs/<name>/best` (checkpoint format of app.ml.checkpoint).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from app.meta.algorithms import MetaAlgorithm, build_algorithm
from app.meta.backbone import Backbone
from app.meta.config import MetaTrainConfig
from app.meta.data import (
    Episode,
    EpisodeMixture,
    LabeledSet,
    SourceSpec,
    cap_per_class,
    load_jsonl,
    sample_episode,
    split_classes,
)
from app.meta.distributed import (
    DistContext,
    average_gradients,
    barrier,
    broadcast_flag,
    init_distributed,
    shutdown,
)
from app.meta.state import load_state, save_state
from app.ml.checkpoint import save_checkpoint
from app.ml.encoder import SentenceEncoder, load_encoder
from app.ml.learner import InnerLoopParams
from app.ml.packaged import PACKAGED_ENCODER, PACKAGED_ENCODER_SHA256

ALGORITHM_FILE = "algorithm.safetensors"
SOURCE_CITATIONS = {
    "clinc150": "CLINC150, Larson et al. 2019 (CC BY 3.0)",
    "huffpost": "HuffPost few-shot split, Bao et al. 2020 (CC BY 4.0)",
    "stackoverflow": "StackOverflow titles, Xu et al. 2015",
    "trec50": "TREC question types, Li & Roth 2002",
    "dbpedia14": "DBpedia14, Zhang et al. 2015 (CC BY-SA 3.0)",
    "goemotions": "GoEmotions, Demszky et al. 2020 (CC BY 4.0)",
}


@dataclass
class TrainingData:
    """The episode mixture and the fixed validation episodes."""

    mixture: EpisodeMixture
    heldout: list[Episode] = field(default_factory=list)
    banking77_train: list[Episode] = field(default_factory=list)

    def texts(self) -> list[str]:
        texts = [text for spec in self.mixture.sources for text in _all_texts(spec.data)]
        for episode in self.heldout + self.banking77_train:
            texts += episode.support_texts + episode.query_texts
        return list(dict.fromkeys(texts))


def _all_texts(data: LabeledSet) -> list[str]:
    return [text for label in data.labels for text in data.by_label[label]]


def build_training_data(cfg: MetaTrainConfig) -> TrainingData:
    """Load the sources, hold out classes for validation, cap texts per class, fix validation episodes."""
    root = Path(cfg.data_dir)
    specs: list[SourceSpec] = []
    heldout: list[Episode] = []
    rng = random.Random(cfg.seed + 1)
    need = cfg.val_shots + cfg.val_queries
    for source in cfg.sources:
        data = load_jsonl(root / f"{source.name}.jsonl", source.splits, source.exclude_labels)
        train, held = split_classes(data, cfg.heldout_fraction, cfg.seed)
        specs.append(SourceSpec(cap_per_class(train, source.cap_per_class, cfg.seed), source.weight, source.way))
        held = cap_per_class(held, need, cfg.seed).restrict([c for c in held.labels if len(held.by_label[c]) >= need])
        if len(held.labels) >= 2:
            heldout += [sample_episode(held, len(held.labels), cfg.val_shots, cfg.val_queries, rng) for _ in range(2)]
    mixture = EpisodeMixture(specs, cfg.shots, cfg.n_query, cfg.hard_fraction)
    banking: list[Episode] = []
    if cfg.select_on == "banking77_train" or cfg.banking77_val_per_class:
        path = root / "banking77.jsonl"
        if path.exists() and cfg.banking77_val_per_class > cfg.val_shots:
            data = cap_per_class(load_jsonl(path, ["train"]), cfg.banking77_val_per_class, cfg.seed)
            queries = cfg.banking77_val_per_class - cfg.val_shots
            banking = [
                sample_episode(data, len(data.labels), cfg.val_shots, queries, rng)
                for _ in range(cfg.banking77_val_episodes)
            ]
    return TrainingData(mixture, heldout, banking)


def attach_similar_classes(mixture: EpisodeMixture, backbone: Backbone) -> None:
    """For hard episodes: each class's other classes of the same source, nearest prototype first."""
    for spec in mixture.sources:
        labels = spec.data.labels
        protos = torch.stack([backbone.embed(spec.data.by_label[c]).mean(0) for c in labels])
        similarity = torch.nn.functional.normalize(protos, dim=-1) @ torch.nn.functional.normalize(protos, dim=-1).T
        order = similarity.argsort(dim=1, descending=True)
        spec.similar = {c: [labels[j] for j in order[i].tolist()] for i, c in enumerate(labels)}


class AnchorEmbeddings:
    """The starting encoder's embeddings of every training text, to keep the trained one near them.

    Built before any outer step (and before a resumed state is loaded), so it always holds the
    encoder the run started from; `drift` is the mean of 1 - cosine over an episode's texts.
    """

    def __init__(self, backbone: Backbone, texts: list[str], device: torch.device) -> None:
        self.row = {text: i for i, text in enumerate(texts)}
        self.embeddings = backbone.embed(texts).to(device)

    def drift(self, texts: list[str], embeddings: torch.Tensor) -> torch.Tensor:
        start = self.embeddings[[self.row[text] for text in texts]]
        return (1.0 - (embeddings * start).sum(dim=-1)).mean()


def episode_accuracy(backbone: Backbone, algorithm: MetaAlgorithm, episodes: list[Episode]) -> float:
    """Mean query accuracy; eval mode, no grad (head algorithms then run the /adapt inner loop)."""
    if not episodes:
        return float("nan")
    scores = []
    with torch.no_grad():
        for episode in episodes:
            support = backbone(episode.support_texts)
            query = backbone(episode.query_texts)
            device = support.device
            logits = algorithm.logits(
                support, torch.tensor(episode.support_targets, device=device), query, episode.n_way
            )
            truth = torch.tensor(episode.query_targets, device=device)
            scores.append((logits.argmax(-1) == truth).float().mean().item())
    return float(np.mean(scores))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def inner_for_export(algorithm: MetaAlgorithm) -> InnerLoopParams:
    if algorithm.exports_head:
        return algorithm.inner_params()
    return InnerLoopParams(0, torch.tensor(1.0), torch.tensor(1.0), algorithm.log_scale)


def save_best(
    folder: Path,
    cfg: MetaTrainConfig,
    encoder: SentenceEncoder,
    backbone: Backbone,
    algorithm: MetaAlgorithm,
    metrics: dict[str, Any],
) -> None:
    """The best model so far as a service checkpoint (+ the algorithm's own tensors)."""
    inner = inner_for_export(algorithm)
    manifest = {
        "name": cfg.name,
        "algorithm": algorithm.name,
        "serves_via_adapt": algorithm.exports_head,
        "inner_loop": {
            "steps": inner.steps,
            "lr_weight": inner.lr_weight.detach().float().mean().item(),
            "lr_weight_per_dim": inner.lr_weight.dim() > 0,
            "lr_bias": float(inner.lr_bias.detach()),
            "temperature": 1.0 / float(inner.log_scale.detach().exp()),
            "scale": float(inner.log_scale.detach().exp()),
        },
        "trained_encoder_prefixes": backbone.prefixes,
        "config": cfg.to_dict(),
        "training_data": [SOURCE_CITATIONS.get(s.name, s.name) for s in cfg.sources],
        "metrics": metrics,
        "git_commit": git_commit(),
    }
    save_checkpoint(folder, encoder, inner, backbone.prefixes, manifest, getattr(torch, cfg.export_dtype))
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in algorithm.state_dict().items()}
    save_file(tensors, str(folder / ALGORITHM_FILE))


def load_algorithm(folder: Path, dim: int) -> MetaAlgorithm:
    """Rebuild the algorithm a run saved (name + options from its manifest, tensors from safetensors)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    cfg = manifest["config"]
    algorithm = build_algorithm(cfg["algorithm"], dim, cfg.get("algorithm_options"))
    algorithm.load_state_dict(load_file(str(folder / ALGORITHM_FILE)))
    return algorithm.eval()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _jsonable_rng(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _restore_rng(rng: random.Random, state: list[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def meta_train(cfg: MetaTrainConfig, progress: bool = True, encoder: SentenceEncoder | None = None) -> dict[str, Any]:
    """Run (or resume) meta-training; returns the summary written to `runs/<name>/summary.json`."""
    ctx: DistContext = init_distributed(cfg.device)
    _seed_everything(cfg.seed + ctx.rank)
    run = cfg.run_path
    if encoder is None:
        encoder = load_encoder(
            cfg.encoder_source or PACKAGED_ENCODER,
            (cfg.encoder_sha256 or PACKAGED_ENCODER_SHA256) if not cfg.encoder_source else (cfg.encoder_sha256 or None),
            cfg.max_tokens,
            str(ctx.device),
            attn_implementation="eager",
        )
    encoder.eval()  # deterministic features (no dropout), the same as at inference
    data = build_training_data(cfg)
    backbone = Backbone(encoder, cfg.train_layers, cache_dir=run.parent / "cache", cache_layer=cfg.cache_layer)
    if not ctx.is_main:
        barrier(ctx)  # rank 0 fills the on-disk cache first; the others then read it
    texts = data.texts()
    backbone.prepare(texts, progress=progress and ctx.is_main)
    if ctx.is_main:
        barrier(ctx)
    if cfg.hard_fraction > 0:
        attach_similar_classes(data.mixture, backbone)
    anchor = AnchorEmbeddings(backbone, texts, ctx.device) if cfg.anchor_weight > 0 else None
    algorithm = build_algorithm(cfg.algorithm, encoder.dim, cfg.algorithm_options).to(ctx.device)
    encoder_params = backbone.trainable_parameters()
    algo_params = [p for p in algorithm.parameters() if p.requires_grad]
    groups = [{"params": algo_params, "lr": cfg.inner_param_lr}]
    if encoder_params:
        groups.insert(0, {"params": encoder_params, "lr": cfg.outer_lr, "weight_decay": cfg.weight_decay})
    optimizer = torch.optim.AdamW(groups, lr=cfg.outer_lr, weight_decay=0.0)
    named = {f"encoder.{k}": v for k, v in backbone.trained_state().items()}
    named.update({f"algo.{k}": v for k, v in algorithm.state_dict().items()})

    rng = random.Random(cfg.seed * 1000 + ctx.rank)
    state = load_state(run / "state", named, optimizer) or {}
    if state:
        _restore_rng(rng, state["rng"][str(ctx.rank)] if str(ctx.rank) in state["rng"] else state["rng"]["0"])
    step = int(state.get("step", 0))
    best = float(state.get("best", float("-inf")))
    bad = int(state.get("bad_validations", 0))
    history: list[dict[str, Any]] = state.get("history", [])
    elapsed_before = float(state.get("elapsed_s", 0.0))
    started = time.monotonic()

    def validate() -> dict[str, float]:
        algorithm.eval()
        metrics = {
            "heldout_acc": episode_accuracy(backbone, algorithm, data.heldout),
            "banking77_train_acc": episode_accuracy(backbone, algorithm, data.banking77_train),
        }
        algorithm.train()
        return metrics

    if ctx.is_main and not history:
        history.append({"step": 0, **validate()})
        if progress:
            tqdm.write(f"step 0 {history[-1]}")
    key = "heldout_acc" if cfg.select_on == "heldout" else "banking77_train_acc"
    if ctx.is_main and not (run / "best").exists():
        best = history[0][key]
        save_best(run / "best", cfg, encoder, backbone, algorithm, history[0])

    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (progress and ctx.is_main), desc=cfg.name)
    ema_loss, ema_acc = None, None
    stop = step >= cfg.max_steps
    algorithm.train()
    while not stop:
        episode = data.mixture.sample(rng)
        n_support = len(episode.support_texts)
        embeddings = backbone(episode.support_texts + episode.query_texts)
        device = embeddings.device
        loss, accuracy = algorithm.loss(
            embeddings[:n_support],
            torch.tensor(episode.support_targets, device=device),
            embeddings[n_support:],
            torch.tensor(episode.query_targets, device=device),
            episode.n_way,
        )
        if anchor is not None:
            loss = loss + cfg.anchor_weight * anchor.drift(episode.support_texts + episode.query_texts, embeddings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(encoder_params + algo_params, ctx)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(encoder_params + algo_params, cfg.grad_clip)
        optimizer.step()
        step += 1
        ema_loss = loss.item() if ema_loss is None else 0.95 * ema_loss + 0.05 * loss.item()
        ema_acc = accuracy.item() if ema_acc is None else 0.95 * ema_acc + 0.05 * accuracy.item()
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.3f}", acc=f"{ema_acc:.3f}", way=episode.n_way)
        elapsed = elapsed_before + time.monotonic() - started
        out_of_time = bool(cfg.time_limit_min) and elapsed > cfg.time_limit_min * 60
        want_stop = False
        if step % cfg.val_every == 0 or step >= cfg.max_steps or out_of_time:
            if ctx.is_main:
                metrics = {"step": step, "train_loss": ema_loss, "train_acc": ema_acc, **validate()}
                history.append(metrics)
                improved = metrics[key] > best
                if improved:
                    best, bad = metrics[key], 0
                    save_best(run / "best", cfg, encoder, backbone, algorithm, metrics)
                else:
                    bad += 1
                tqdm.write(
                    f"step {step} {json.dumps({k: round(v, 4) for k, v in metrics.items()})}{' *' if improved else ''}"
                )
                want_stop = bad >= cfg.patience or step >= cfg.max_steps or out_of_time
                save_state(
                    run / "state",
                    named,
                    optimizer,
                    {
                        "step": step,
                        "best": best,
                        "bad_validations": bad,
                        "history": history,
                        "rng": {"0": _jsonable_rng(rng)},
                        "elapsed_s": elapsed,
                    },
                )
            stop = broadcast_flag(want_stop, ctx)
    bar.close()
    summary: dict[str, Any] = {"name": cfg.name, "steps": step, "best": best, "select_on": key, "history": history}
    if ctx.is_main:
        (run / "summary.json").write_text(json.dumps(summary, indent=1))
        if cfg.export_dir:
            export = Path(cfg.export_dir)
            export.mkdir(parents=True, exist_ok=True)
            for item in (run / "best").iterdir():
                shutil.copy2(item, export / item.name)
    shutdown(ctx)
    return summary
