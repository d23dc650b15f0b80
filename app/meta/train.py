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
    label_names,
    load_jsonl,
    sample_episode,
    split_classes,
)
from app.meta.distributed import (
    DistContext,
    all_gather_json,
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
    "sgd_intents": "Schema-Guided Dialogue intents, Rastogi et al. 2020 (CC BY-SA 4.0)",
    "multidogo": "MultiDoGO, Peskov et al. 2019 (CDLA-Permissive 1.0)",
    "dstc11_insurance": "DSTC11 track 2 (NatCS) insurance, Gung et al. 2023 (CDLA-Permissive 2.0)",
    "dstc11_finance": "DSTC11 track 2 (NatCS) finance, Gung et al. 2023 (CDLA-Permissive 2.0)",
    "hint3_sofmattress": "HINT3 SOFMattress, Arora et al. 2020 (ODbL 1.0 + DbCL 1.0)",
    "hint3_curekart": "HINT3 Curekart, Arora et al. 2020 (ODbL 1.0 + DbCL 1.0)",
    "hint3_powerplay11": "HINT3 Powerplay11, Arora et al. 2020 (ODbL 1.0 + DbCL 1.0)",
    "snips": "SNIPS, Coucke et al. 2018 (CC0 1.0)",
}


@dataclass
class TrainingData:
    """The episode mixture and the fixed validation episodes."""

    mixture: EpisodeMixture
    heldout: list[Episode] = field(default_factory=list)
    banking77_train: list[Episode] = field(default_factory=list)

    def texts(self) -> list[str]:
        texts = [text for spec in self.mixture.sources for text in _all_texts(spec.data)]
        texts += [name for spec in self.mixture.sources for name in (spec.names or {}).values()]
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
        overrides = json.loads(Path(source.label_names).read_text()) if source.label_names else None
        names = label_names(train.labels, overrides)
        capped = cap_per_class(train, source.cap_per_class, cfg.seed)
        specs.append(SourceSpec(capped, source.weight, source.way, names=names))
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


def _training_encoder(cfg: MetaTrainConfig, ctx: DistContext) -> SentenceEncoder:
    """The configured base encoder (the packaged one by default), eager attention for double backward."""
    return load_encoder(
        cfg.encoder_source or PACKAGED_ENCODER,
        (cfg.encoder_sha256 or PACKAGED_ENCODER_SHA256) if not cfg.encoder_source else (cfg.encoder_sha256 or None),
        cfg.max_tokens,
        str(ctx.device),
        attn_implementation="eager",
    )


def _prepared_backbone(
    cfg: MetaTrainConfig, ctx: DistContext, encoder: SentenceEncoder, texts: list[str], progress: bool
) -> Backbone:
    """The backbone with every training text's frozen part computed (rank 0 fills the disk cache first)."""
    backbone = Backbone(encoder, cfg.train_layers, cache_dir=cfg.run_path.parent / "cache", cache_layer=cfg.cache_layer)
    if not ctx.is_main:
        barrier(ctx)  # the others then read rank 0's cache
    backbone.prepare(texts, progress=progress and ctx.is_main)
    if ctx.is_main:
        barrier(ctx)
    return backbone


class OuterLoop:
    """The trained parameters (encoder part + algorithm), their optimizer, and one outer step."""

    def __init__(
        self,
        cfg: MetaTrainConfig,
        ctx: DistContext,
        backbone: Backbone,
        algorithm: MetaAlgorithm,
        anchor: AnchorEmbeddings | None,
    ) -> None:
        self.cfg, self.ctx, self.backbone, self.algorithm, self.anchor = cfg, ctx, backbone, algorithm, anchor
        encoder_params = backbone.trainable_parameters()
        algo_params = [p for p in algorithm.parameters() if p.requires_grad]
        groups = [{"params": algo_params, "lr": cfg.inner_param_lr}]
        if encoder_params:
            groups.insert(0, {"params": encoder_params, "lr": cfg.outer_lr, "weight_decay": cfg.weight_decay})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.outer_lr, weight_decay=0.0)
        self.params = encoder_params + algo_params
        self.named = {f"encoder.{k}": v for k, v in backbone.trained_state().items()}
        self.named.update({f"algo.{k}": v for k, v in algorithm.state_dict().items()})

    def step(self, episode: Episode) -> tuple[float, float]:
        """Loss on the episode's queries (+ the anchor term), gradients averaged over ranks, one update.

        An algorithm that `uses_names` gets the label names' embeddings too (same forward pass, same encoder),
        when the episode's labels read as words."""
        n_support = len(episode.support_texts)
        texts = episode.support_texts + episode.query_texts
        names = episode.names if self.algorithm.uses_names and episode.names else []
        embeddings = self.backbone(texts + names)
        device = embeddings.device
        loss, accuracy = self.algorithm.loss(
            embeddings[:n_support],
            torch.tensor(episode.support_targets, device=device),
            embeddings[n_support : len(texts)],
            torch.tensor(episode.query_targets, device=device),
            episode.n_way,
            names=embeddings[len(texts) :] if names else None,
        )
        embeddings = embeddings[: len(texts)]
        if self.anchor is not None:
            drift = self.anchor.drift(texts, embeddings)
            loss = loss + self.cfg.anchor_weight * drift
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params, self.ctx)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        return loss.item(), accuracy.item()


@dataclass
class RunProgress:
    """Where a run stands (kept in `runs/<name>/state` with every rank's episode RNG)."""

    step: int = 0
    best: float = float("-inf")
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0  # training time of earlier sessions of the run

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunProgress:
        return cls(
            step=int(state.get("step", 0)),
            best=float(state.get("best", float("-inf"))),
            bad_validations=int(state.get("bad_validations", 0)),
            history=state.get("history", []),
            elapsed_s=float(state.get("elapsed_s", 0.0)),
        )

    def to_state(self, rng_states: list[list[Any]], elapsed_s: float) -> dict[str, Any]:
        """The JSON state; `rng_states[r]` is rank r's episode RNG."""
        return {
            "step": self.step,
            "best": self.best,
            "bad_validations": self.bad_validations,
            "history": self.history,
            "rng": {str(rank): state for rank, state in enumerate(rng_states)},
            "elapsed_s": elapsed_s,
        }


def _resume(run: Path, loop: OuterLoop, rng: random.Random, ctx: DistContext) -> RunProgress:
    """Restore parameters, optimizer and this rank's own episode RNG from the run's state, if any.

    A rank the state has no RNG for (a resume on more ranks) keeps its freshly seeded one.
    """
    state = load_state(run / "state", loop.named, loop.optimizer)
    if not state:
        return RunProgress()
    own_rng = state.get("rng", {}).get(str(ctx.rank))
    if own_rng is not None:
        _restore_rng(rng, own_rng)
    return RunProgress.from_state(state)


def _validate(backbone: Backbone, algorithm: MetaAlgorithm, data: TrainingData) -> dict[str, float]:
    algorithm.eval()
    metrics = {
        "heldout_acc": episode_accuracy(backbone, algorithm, data.heldout),
        "banking77_train_acc": episode_accuracy(backbone, algorithm, data.banking77_train),
    }
    algorithm.train()
    return metrics


def _out_of_time(cfg: MetaTrainConfig, elapsed_s: float, ctx: DistContext) -> bool:
    """Rank 0's clock decides for every rank, so that all of them checkpoint (and stop) at the same step."""
    if not cfg.time_limit_min:
        return False
    return broadcast_flag(elapsed_s > cfg.time_limit_min * 60, ctx)


def _export(cfg: MetaTrainConfig, summary: dict[str, Any]) -> None:
    """summary.json in the run; the best model copied to `export_dir` when one is set."""
    run = cfg.run_path
    (run / "summary.json").write_text(json.dumps(summary, indent=1))
    if cfg.export_dir:
        export = Path(cfg.export_dir)
        export.mkdir(parents=True, exist_ok=True)
        for item in (run / "best").iterdir():
            shutil.copy2(item, export / item.name)


def _validate_and_save(
    cfg: MetaTrainConfig,
    loop: OuterLoop,
    data: TrainingData,
    state: RunProgress,
    train_metrics: dict[str, float | None],
    rng_states: list[list[Any]],
    elapsed_s: float,
) -> bool:
    """Rank 0 at a validation step: validate, keep the best model, save the resumable state.

    Returns whether to stop (patience used up or `max_steps` reached).
    """
    key = _selection_key(cfg)
    metrics = {"step": state.step, **train_metrics, **_validate(loop.backbone, loop.algorithm, data)}
    state.history.append(metrics)
    improved = metrics[key] > state.best
    if improved:
        state.best, state.bad_validations = metrics[key], 0
        save_best(cfg.run_path / "best", cfg, loop.backbone.encoder, loop.backbone, loop.algorithm, metrics)
    else:
        state.bad_validations += 1
    rounded = json.dumps({k: round(v, 4) for k, v in metrics.items()})
    tqdm.write(f"step {state.step} {rounded}{' *' if improved else ''}")
    save_state(cfg.run_path / "state", loop.named, loop.optimizer, state.to_state(rng_states, elapsed_s))
    return state.bad_validations >= cfg.patience or state.step >= cfg.max_steps


def _selection_key(cfg: MetaTrainConfig) -> str:
    return "heldout_acc" if cfg.select_on == "heldout" else "banking77_train_acc"


def meta_train(cfg: MetaTrainConfig, progress: bool = True, encoder: SentenceEncoder | None = None) -> dict[str, Any]:
    """Run (or resume) meta-training; returns the summary written to `runs/<name>/summary.json`."""
    ctx: DistContext = init_distributed(cfg.device)
    _seed_everything(cfg.seed + ctx.rank)
    run = cfg.run_path
    if encoder is None:
        encoder = _training_encoder(cfg, ctx)
    encoder.eval()  # deterministic features (no dropout), the same as at inference
    data = build_training_data(cfg)
    texts = data.texts()
    backbone = _prepared_backbone(cfg, ctx, encoder, texts, progress)
    if cfg.hard_fraction > 0:
        attach_similar_classes(data.mixture, backbone)
    anchor = AnchorEmbeddings(backbone, texts, ctx.device) if cfg.anchor_weight > 0 else None
    algorithm = build_algorithm(cfg.algorithm, encoder.dim, cfg.algorithm_options).to(ctx.device)
    loop = OuterLoop(cfg, ctx, backbone, algorithm, anchor)
    rng = random.Random(cfg.seed * 1000 + ctx.rank)  # this rank's episodes
    state = _resume(run, loop, rng, ctx)
    started = time.monotonic()

    key = _selection_key(cfg)
    if ctx.is_main and not state.history:
        state.history.append({"step": 0, **_validate(backbone, algorithm, data)})
        if progress:
            tqdm.write(f"step 0 {state.history[-1]}")
    if ctx.is_main and not (run / "best").exists():
        state.best = state.history[0][key]
        save_best(run / "best", cfg, encoder, backbone, algorithm, state.history[0])

    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not (progress and ctx.is_main), desc=cfg.name)
    ema_loss, ema_acc = None, None
    stop = state.step >= cfg.max_steps
    algorithm.train()
    while not stop:
        episode = data.mixture.sample(rng)
        loss, accuracy = loop.step(episode)
        state.step += 1
        ema_loss = loss if ema_loss is None else 0.95 * ema_loss + 0.05 * loss
        ema_acc = accuracy if ema_acc is None else 0.95 * ema_acc + 0.05 * accuracy
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.3f}", acc=f"{ema_acc:.3f}", way=episode.n_way)
        elapsed = state.elapsed_s + time.monotonic() - started
        out_of_time = _out_of_time(cfg, elapsed, ctx)
        if state.step % cfg.val_every == 0 or state.step >= cfg.max_steps or out_of_time:
            rng_states = all_gather_json(_jsonable_rng(rng), ctx)  # every rank's own episode stream
            want_stop = False
            if ctx.is_main:
                train_metrics = {"train_loss": ema_loss, "train_acc": ema_acc}
                want_stop = _validate_and_save(cfg, loop, data, state, train_metrics, rng_states, elapsed)
                want_stop = want_stop or out_of_time
            stop = broadcast_flag(want_stop, ctx)
    bar.close()
    summary = {"name": cfg.name, "steps": state.step, "best": state.best, "select_on": key, "history": state.history}
    if ctx.is_main:
        _export(cfg, summary)
    shutdown(ctx)
    return summary
