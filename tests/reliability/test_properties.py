"""Property tests (hypothesis): head codec and record checks, store round-trip and version monotonicity."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import uuid
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.ml.head import HeadDecodeError, TenantHead
from app.ml.learner import HeadTensors
from app.services.records import UnusableModel, build_meta, open_record
from app.store import MemoryStore, RedisStore, StoredModel, TenantStore
from app.store.base import NO_MODEL

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FINGERPRINT = "0123456789abcdef"

labels_st = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=6, unique=True)
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def heads(draw: st.DrawFn) -> TenantHead:
    """Arbitrary heads: unicode labels, any finite weights, scale and (optional) out-of-scope threshold."""
    labels = draw(labels_st)
    dim = draw(st.integers(1, 8))
    n = len(labels)
    weight = torch.tensor(draw(st.lists(finite, min_size=n * dim, max_size=n * dim))).reshape(n, dim)
    bias = torch.tensor(draw(st.lists(finite, min_size=n, max_size=n)))
    scale = draw(st.floats(1e-3, 1e3, allow_nan=False))
    threshold = draw(st.none() | st.floats(-1, 1, allow_nan=False))
    return make_head(labels, weight, bias, scale, threshold)


def make_head(
    labels: list[str], weight: torch.Tensor, bias: torch.Tensor, scale: float, threshold: float | None = None
) -> TenantHead:
    """A head built the way the service builds one (`TenantHead.from_tensors`, whatever its precision rules);
    prototypes, where the head has them, derived from the weights."""
    params = inspect.signature(TenantHead.from_tensors).parameters
    kwargs: dict[str, Any] = {"labels": labels, "head": HeadTensors(weight.float(), bias.float()), "scale": scale}
    if "prototypes" in params:
        kwargs["prototypes"] = torch.nn.functional.normalize(weight.float(), dim=-1)
    if "oos_threshold" in params:
        kwargs["oos_threshold"] = threshold
    return TenantHead.from_tensors(**kwargs)


def assert_same_head(a: TenantHead, b: TenantHead) -> None:
    for field in dataclasses.fields(TenantHead):
        left, right = getattr(a, field.name), getattr(b, field.name)
        if isinstance(left, torch.Tensor):
            assert left.dtype == right.dtype and torch.equal(left, right), field.name
        else:
            assert left == right, field.name


@PROPERTY_SETTINGS
@given(head=heads())
def test_head_codec_round_trips_exactly(head: TenantHead) -> None:
    assert_same_head(TenantHead.from_bytes(head.to_bytes()), head)


@PROPERTY_SETTINGS
@given(head=heads(), data=st.data())
def test_truncated_head_is_refused_with_the_codec_error_only(head: TenantHead, data: st.DataObject) -> None:
    encoded = head.to_bytes()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(HeadDecodeError):
        TenantHead.from_bytes(encoded[:cut])


@PROPERTY_SETTINGS
@given(garbage=st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_another_exception(garbage: bytes) -> None:
    with contextlib.suppress(HeadDecodeError):
        TenantHead.from_bytes(garbage)


@PROPERTY_SETTINGS
@given(head=heads(), data=st.data())
def test_any_damaged_record_is_refused(head: TenantHead, data: st.DataObject) -> None:
    """Flip any bit, truncate anywhere or change the schema: `open_record` refuses; intact: it decodes."""
    encoded = head.to_bytes()
    meta = build_meta(encoded, head.labels, dict.fromkeys(head.labels, 1), FINGERPRINT, 5)
    assert_same_head(open_record(StoredModel(1, encoded, meta), FINGERPRINT), head)

    position = data.draw(st.integers(0, len(encoded) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(encoded)
    flipped[position] ^= 1 << bit
    cut = data.draw(st.integers(0, len(encoded) - 1))
    schema = data.draw(st.none() | st.integers().filter(lambda s: s != meta["schema"]) | st.text(max_size=3))
    for damaged in (
        StoredModel(1, bytes(flipped), meta),
        StoredModel(1, encoded[:cut], meta),
        StoredModel(1, encoded, meta | {"schema": schema}),
    ):
        with pytest.raises(UnusableModel):
            open_record(damaged, FINGERPRINT)


# ---------------------------------------------------------------------------------------------------------------
# stores

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
metas = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
supports = st.lists(
    st.fixed_dictionaries({"text": st.text(min_size=1, max_size=30), "label": st.text(min_size=1, max_size=10)}),
    max_size=6,
)


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest, redis_url: str) -> Any:
    """A factory of empty stores (a fresh Redis prefix per hypothesis example), cleaned up afterwards."""
    made: list[RedisStore] = []

    def factory() -> TenantStore:
        if request.param == "memory":
            return MemoryStore(keep_versions=3)
        store = RedisStore(redis_url, prefix=f"fewshot-prop-{uuid.uuid4().hex[:10]}", keep_versions=3)
        made.append(store)
        return store

    yield factory
    for store in made:
        for key in store._client.scan_iter(match=f"{store._prefix}:*"):
            store._client.delete(key)
        store.close()


@PROPERTY_SETTINGS
@given(head=st.binary(max_size=2048), meta=metas, support=supports)
def test_store_round_trips_bytes_and_json(make_store: Any, head: bytes, meta: dict, support: list) -> None:
    store = make_store()
    version = store.save("tenant", head, meta, support)
    loaded = store.load("tenant")
    assert loaded == StoredModel(version, head, meta)
    assert store.load_support("tenant") == support
    assert store.current_version("tenant") == version


operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.sampled_from(["a", "b"]), st.binary(max_size=8)),
        st.tuples(st.just("cas"), st.sampled_from(["a", "b"]), st.integers(-1, 1)),
        st.tuples(st.just("rollback"), st.sampled_from(["a", "b"]), st.integers(1, 4)),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b"]), st.none()),
    ),
    min_size=1,
    max_size=25,
)


@PROPERTY_SETTINGS
@given(ops=operations)
def test_versions_are_unique_and_increasing_whatever_the_history(make_store: Any, ops: list) -> None:
    """Any interleaving of saves, compare-and-sets, rollbacks and deletes: every new version is larger than
    every version that tenant ever had, a failed compare-and-set changes nothing, loads see the last write."""
    store = make_store()
    last: dict[str, int] = {}  # highest version ever issued per tenant
    current: dict[str, tuple[int, bytes] | None] = {}
    for op, tenant, arg in ops:
        before = store.load(tenant)
        if op == "save":
            version = store.save(tenant, arg, {"op": op}, [])
            assert version is not None
        elif op == "cas":
            # arg 0: the right version (NO_MODEL = 0 when the tenant has none), else a wrong one
            expected = (current.get(tenant) or (NO_MODEL, b""))[0] + arg
            version = store.save(tenant, b"cas", {"op": op}, [], expected_version=expected)
            if arg != 0:
                assert version is None and store.load(tenant) == before
                continue
        elif op == "rollback":
            version = store.rollback(tenant, last.get(tenant, 0) - arg + 1)
            if version is None:
                assert store.load(tenant) == before
                continue
        else:
            store.delete(tenant)
            current[tenant] = None
            assert store.load(tenant) is None and store.current_version(tenant) is None
            continue
        assert version > last.get(tenant, 0)
        last[tenant] = version
        loaded = store.load(tenant)
        assert loaded is not None and loaded.version == version == store.current_version(tenant)
        current[tenant] = (version, loaded.head)
