"""2-layer, 32-dim random encoders (BERT, MPNet) with the real tokenizer, for fast unit tests."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, BertConfig, BertModel, MPNetConfig, MPNetModel, PreTrainedTokenizerBase

from app.config import PACKAGED_ENCODER
from app.ml.encoder import EncoderInfo, SentenceEncoder, resolve_source


def packaged_tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(resolve_source(PACKAGED_ENCODER)))


def build_tiny_encoder(tokenizer: PreTrainedTokenizerBase, seed: int = 0, sha: str = "0" * 64) -> SentenceEncoder:
    """Same seed -> same weights; `sha` fakes the base weights' hash."""
    torch.manual_seed(seed)
    config = BertConfig(**_tiny_shape(tokenizer), max_position_embeddings=128)
    config._attn_implementation = "eager"
    model = BertModel(config, add_pooling_layer=False).eval()
    return SentenceEncoder(model, tokenizer, EncoderInfo("tiny-random", sha, 32), max_tokens=32)


def build_tiny_mpnet(tokenizer: PreTrainedTokenizerBase, seed: int = 0, sha: str = "1" * 64) -> SentenceEncoder:
    """The same shape as MPNet: its layers take a relative position bias, which BERT's do not."""
    torch.manual_seed(seed)
    config = MPNetConfig(**_tiny_shape(tokenizer), max_position_embeddings=130)  # MPNet offsets positions by 2
    config._attn_implementation = "eager"
    model = MPNetModel(config, add_pooling_layer=False).eval()
    return SentenceEncoder(model, tokenizer, EncoderInfo("tiny-mpnet", sha, 32), max_tokens=32)


def _tiny_shape(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    return {
        "vocab_size": tokenizer.vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
