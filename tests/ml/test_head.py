"""Head codec: safetensors bytes round-trip; malformed bytes are refused."""

from __future__ import annotations

import pytest
import torch

from app.ml.head import HeadDecodeError, TenantHead


def _head() -> TenantHead:
    torch.manual_seed(1)
    prototypes = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1).half()
    weight = torch.randn(3, 8).half().float()  # heads hold float16-representable weights
    return TenantHead(["a", "b", "c ü"], weight, torch.randn(3), 17.5, prototypes, 0.42)


def test_round_trip_is_exact() -> None:
    head = _head()
    decoded = TenantHead.from_bytes(head.to_bytes())
    assert decoded.labels == head.labels and decoded.scale == head.scale
    assert decoded.oos_threshold == head.oos_threshold
    assert torch.equal(decoded.weight, head.weight) and torch.equal(decoded.bias, head.bias)
    assert torch.equal(decoded.prototypes, head.prototypes)


def test_threshold_may_be_absent() -> None:
    head = _head()
    head.oos_threshold = None
    assert TenantHead.from_bytes(head.to_bytes()).oos_threshold is None


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
    assert data.count(b'"schema":"1"') == 1
    tampered = data.replace(b'"schema":"1"', b'"schema":"9"')  # same length, header stays valid JSON
    with pytest.raises(HeadDecodeError, match="schema"):
        TenantHead.from_bytes(tampered)


def test_label_count_mismatch_is_refused() -> None:
    head = _head()
    head.labels = ["a", "b"]
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(head.to_bytes())


def test_weights_are_stored_as_float16() -> None:
    from app.ml.learner import HeadTensors

    tensors = HeadTensors(torch.randn(4, 384), torch.randn(4))
    prototypes = torch.nn.functional.normalize(torch.randn(4, 384), dim=-1)
    head = TenantHead.from_tensors(["a", "b", "c", "d"], tensors, 10.0, prototypes, None)
    torch.testing.assert_close(head.weight, tensors.weight, atol=2e-3, rtol=1e-3)
    assert len(head.to_bytes()) < 4 * 384 * 2 * 2 + 1024  # two float16 matrices + header
