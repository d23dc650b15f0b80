"""Head codec: safetensors bytes round-trip; malformed bytes are refused."""

from __future__ import annotations

import json

import pytest
import torch

from app.ml.head import HeadDecodeError, TenantHead


def _head() -> TenantHead:
    torch.manual_seed(1)
    return TenantHead(["a", "b", "c ü"], torch.randn(3, 8), torch.randn(3), 17.5)


def test_round_trip_is_exact() -> None:
    head = _head()
    decoded = TenantHead.from_bytes(head.to_bytes())
    assert decoded.labels == head.labels and decoded.scale == head.scale
    assert torch.equal(decoded.weight, head.weight) and torch.equal(decoded.bias, head.bias)


def test_probabilities_sum_to_one() -> None:
    probs = _head().probabilities(torch.randn(5, 8))
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))


@pytest.mark.parametrize("cut", [0, 4, 20, -10])
def test_truncated_bytes_are_refused(cut: int) -> None:
    data = _head().to_bytes()
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(data[:cut])


def test_other_schema_is_refused() -> None:
    data = _head().to_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    header["__metadata__"]["schema"] = "99"
    new_header = json.dumps(header, separators=(",", ":")).encode().ljust(header_len)
    assert len(new_header) == header_len
    with pytest.raises(HeadDecodeError, match="schema"):
        TenantHead.from_bytes(data[:8] + new_header + data[8 + header_len :])


def test_label_count_mismatch_is_refused() -> None:
    head = _head()
    head.labels = ["a", "b"]
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(head.to_bytes())
