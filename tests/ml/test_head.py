"""Head codec: safetensors bytes round-trip; malformed bytes are refused."""

from __future__ import annotations

import pytest
import torch

from app.ml.head import HeadDecodeError, Int8Rows, TenantHead
from app.ml.learner import HeadTensors


def _head() -> TenantHead:
    torch.manual_seed(1)
    prototypes = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    return TenantHead.from_tensors(
        ["a", "b", "c ü"], HeadTensors(torch.randn(3, 8), torch.randn(3)), 17.5, prototypes, 0.42
    )


def test_round_trip_is_exact() -> None:
    head = _head()
    decoded = TenantHead.from_bytes(head.to_bytes())
    assert decoded.labels == head.labels and decoded.scale == head.scale
    assert decoded.oos_threshold == head.oos_threshold
    assert decoded.weight == head.weight and torch.equal(decoded.bias, head.bias)
    assert decoded.prototypes == head.prototypes


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
    assert data.count(b'"schema":"2"') == 1
    tampered = data.replace(b'"schema":"2"', b'"schema":"9"')  # same length, header stays valid JSON
    with pytest.raises(HeadDecodeError, match="schema"):
        TenantHead.from_bytes(tampered)


def test_label_count_mismatch_is_refused() -> None:
    head = _head()
    head.labels = ["a", "b"]
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(head.to_bytes())


def test_rows_are_stored_as_int8_with_small_error() -> None:
    torch.manual_seed(3)
    tensors = HeadTensors(torch.randn(4, 384), torch.randn(4))
    prototypes = torch.nn.functional.normalize(torch.randn(4, 384), dim=-1)
    head = TenantHead.from_tensors(["a", "b", "c", "d"], tensors, 10.0, prototypes, None)
    assert head.weight.values.dtype == torch.int8 and head.prototypes.values.dtype == torch.int8
    row_max = tensors.weight.abs().amax(dim=1, keepdim=True)
    # half a step of int8, plus the scale's float16 rounding (2**-11 relative, over up to 127 steps)
    assert ((head.weight.dequantize() - tensors.weight).abs() <= row_max / 254 * 1.13 + 1e-6).all()
    x = torch.nn.functional.normalize(torch.randn(6, 384), dim=-1)
    exact = torch.softmax(10.0 * (x @ tensors.weight.T + tensors.bias), dim=-1)
    torch.testing.assert_close(head.probabilities(x), exact, atol=5e-3, rtol=0)
    assert len(head.to_bytes()) < 4 * (2 * 384 + 8) + 600  # two int8 matrices, float16 scales, bias + header


def test_row_scales_are_stored_as_float16_without_changing_the_served_head() -> None:
    from safetensors.torch import load

    head = _head()
    stored = load(head.to_bytes())
    assert stored["weight_scale"].dtype == stored["prototypes_scale"].dtype == torch.float16
    assert torch.equal(stored["weight_scale"].float(), head.weight.scales)  # what is served is what is saved


def test_zero_rows_quantize_without_nan() -> None:
    rows = Int8Rows.quantize(torch.zeros(2, 5))
    assert torch.equal(rows.dequantize(), torch.zeros(2, 5))


def test_other_schemas_are_refused() -> None:
    """Only schema "2" (int8 rows) was ever released: a head of another schema is not decoded (and is rebuilt)."""
    from safetensors.torch import save

    weight, prototypes = torch.randn(2, 8).half(), torch.nn.functional.normalize(torch.randn(2, 8), dim=-1).half()
    metadata = {"schema": "1", "labels": '["x", "y"]', "scale": "10.0", "oos_threshold": "0.3"}
    other = save({"weight": weight, "bias": torch.zeros(2), "prototypes": prototypes}, metadata=metadata)
    with pytest.raises(HeadDecodeError, match="schema"):
        TenantHead.from_bytes(other)


def test_adapted_norm_round_trips_and_changes_scores() -> None:
    torch.manual_seed(5)
    gain, shift = 1 + 0.2 * torch.randn(8), 0.05 * torch.randn(8)
    tensors = HeadTensors(torch.randn(3, 8), torch.randn(3), gain, shift)
    prototypes = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    head = TenantHead.from_tensors(["a", "b", "c"], tensors, 10.0, prototypes, None)
    decoded = TenantHead.from_bytes(head.to_bytes())
    assert torch.equal(decoded.norm_gain, head.norm_gain) and torch.equal(decoded.norm_shift, head.norm_shift)
    x = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    plain = TenantHead.from_tensors(["a", "b", "c"], HeadTensors(tensors.weight, tensors.bias), 10.0, prototypes, None)
    assert not torch.allclose(decoded.probabilities(x), plain.probabilities(x))
    features = torch.nn.functional.normalize(x * gain + shift, dim=-1)
    expected = torch.softmax(10.0 * (features @ tensors.weight.T + tensors.bias), dim=-1)
    torch.testing.assert_close(decoded.probabilities(x), expected, atol=1e-2, rtol=0)


def test_int8_rows_serve_from_one_float_copy_made_on_first_use() -> None:
    rows = Int8Rows.quantize(torch.randn(7, 16))
    x = torch.randn(3, 16)
    expected = (x @ rows.values.float().T) * rows.scales  # the int8 maths, dequantised on the fly
    torch.testing.assert_close(rows.matmul_t(x), expected, rtol=1e-5, atol=1e-5)
    assert rows.matmul_t(x).shape == (3, 7)
    assert rows.dense is rows.dense  # dequantised once, then kept
    assert rows.serving_nbytes == rows.nbytes + 4 * 7 * 16
