"""Meta-training configuration (YAML or JSON file -> dataclasses)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EVALUATION_SET = "banking77"  # never meta-trained on
# sets ../shared/data/README.md marks `experiments` (no clear license): measure with them, never export weights
EXPERIMENT_ONLY_SOURCES = frozenset({"acid", "atis", "bitext_customer_service", "rasa_demo", "mixsnips"})


@dataclass
class SourceConfig:
    """One JSONL source of the meta-training mixture."""

    name: str
    weight: float = 1.0
    way: tuple[int, int] = (5, 20)
    splits: list[str] = field(default_factory=lambda: ["train"])
    exclude_labels: list[str] = field(default_factory=list)
    cap_per_class: int = 40
    label_names: str = ""  # JSON file {label: name as words} for labels whose names do not split into words


@dataclass
class MetaTrainConfig:
    """Everything `fewshot meta-train` needs; relative paths resolve against the working directory."""

    name: str
    algorithm: str = "protomaml"
    algorithm_options: dict[str, Any] = field(default_factory=dict)
    train_layers: int | str = 1  # "none" | "norm" | "bias" | k (top k layers) | "all"
    data_dir: str = "../shared/data"
    sources: list[SourceConfig] = field(default_factory=list)
    heldout_fraction: float = 0.15
    shots: tuple[int, int] = (1, 5)
    n_query: int = 5
    hard_fraction: float = 0.0  # episodes of an anchor class + its nearest classes (by frozen prototypes)
    outer_lr: float = 2e-5
    inner_param_lr: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    anchor_weight: float = 0.0  # weight of mean(1 - cosine) between episode embeddings and the starting encoder's
    max_steps: int = 1000
    time_limit_min: float = 0.0  # 0 = no limit
    val_every: int = 50
    patience: int = 6  # validations without improvement before stopping
    select_on: str = "heldout"  # "heldout" or "banking77_train"
    val_shots: int = 5
    val_queries: int = 10
    banking77_val_per_class: int = 15  # texts per class from BANKING77's *train* split (selection only)
    banking77_val_episodes: int = 2  # 77-way selection episodes drawn from them
    seed: int = 0
    max_tokens: int = 64
    cache_layer: int | None = None  # train_layers "norm": which layer's input to cache (share another run's cache)
    device: str = "auto"
    encoder_source: str = ""  # empty: the service default
    encoder_sha256: str = ""
    run_dir: str = ""  # default runs/<name>
    export_dir: str = ""  # where the best checkpoint is exported (empty: not exported)
    export_dtype: str = "float32"  # precision of the trained encoder tensors in the checkpoint

    def __post_init__(self) -> None:
        self.sources = [s if isinstance(s, SourceConfig) else SourceConfig(**s) for s in self.sources]
        for source in self.sources:
            source.way = tuple(source.way)  # type: ignore[assignment]
            if source.name.lower().startswith(EVALUATION_SET):
                raise ValueError(f"{source.name} is the evaluation set; it must not be meta-trained on")
        experiments = sorted({s.name for s in self.sources} & EXPERIMENT_ONLY_SOURCES)
        if self.export_dir and experiments:
            raise ValueError(
                f"{', '.join(experiments)} may be used for experiments only (no clear license): a run trained on "
                "them must not export a checkpoint (set export_dir to '')"
            )
        self.shots = tuple(self.shots)  # type: ignore[assignment]
        if self.export_dtype not in {"float32", "float16", "bfloat16"}:
            raise ValueError(f"export_dtype must be float32, float16 or bfloat16, not {self.export_dtype!r}")
        if self.select_on not in {"heldout", "banking77_train"}:
            raise ValueError(f"select_on must be heldout or banking77_train, not {self.select_on!r}")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> MetaTrainConfig:
    """Read YAML (.yaml/.yml) or JSON; `overrides` replace top-level keys."""
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    raw.update(overrides or {})
    return MetaTrainConfig(**raw)
