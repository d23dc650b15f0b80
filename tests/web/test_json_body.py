"""`app.web.json_body`: a body to JSON within its endpoint's caps, both ways of parsing (one `json.loads`, and the
step-by-step walk for bodies of many elements) giving `json.loads`'s value and the same refusals."""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.errors import ServiceError
from app.web.json_body import LOOP_BYTES, BodyCaps, read_json

CAPS = BodyCaps(max_examples=5, max_labels=3, max_texts=2, max_pool=4, max_items=6, max_depth=8)
LOOSE = BodyCaps(max_items=10**6, max_depth=64)  # nothing a generated value holds is over these


def both_ways(caps: BodyCaps, path: str, body: bytes) -> list[Any]:
    """The value (or the refusal's code) from `json.loads` + checks and from the step-by-step walk."""
    outcomes = []
    for parse in (caps.loads_checked, caps.parse_stepwise):
        try:
            outcomes.append(parse(body, caps.shape(path)))
        except ServiceError as exc:
            assert exc.status == 422 and exc.message
            outcomes.append(exc.code)
    return outcomes


def items(n: int) -> list[str]:
    return [f"i{i}" for i in range(n)]


def example_list(n: int) -> list[dict[str, Any]]:
    return [{"text": f"t{i}", "label": "a"} for i in range(n)]


@pytest.mark.parametrize(
    ("path", "field", "limit", "code"),
    [
        ("/adapt", {"examples": example_list}, 5, "too_many_examples"),
        ("/adapt", {"labels": items}, 3, "too_many_labels"),
        ("/adapt", {"remove_labels": items}, 3, "too_many_labels"),
        ("/adapt", {"label_descriptions": lambda n: {f"l{i}": "d" for i in range(n)}}, 3, "too_many_labels"),
        ("/adapt", {"examples": lambda n: [{"text": "t", "labels": items(n)}]}, 3, "too_many_labels"),
        ("/predict", {"texts": items}, 2, "too_many_texts"),
        ("/tenants/acme/suggest", {"texts": items}, 4, "too_many_texts"),
        ("/tenants/acme/evaluate", {"examples": example_list}, 5, "too_many_examples"),
        ("/predict", {"extra": items}, 6, "too_many_items"),
        ("/tenants/acme/rollback", {"version": items}, 6, "too_many_items"),
    ],
)
def test_each_endpoint_caps_its_lists_and_objects(path: str, field: dict, limit: int, code: str) -> None:
    ((name, make),) = field.items()
    at_limit = {"tenant_id": "acme", name: make(limit)}
    over = {"tenant_id": "acme", name: make(limit + 1)}
    assert both_ways(CAPS, path, json.dumps(at_limit).encode()) == [at_limit, at_limit]
    assert both_ways(CAPS, path, json.dumps(over).encode()) == [code, code]


def test_a_cap_is_the_endpoints_own_not_another_endpoints() -> None:
    texts = {"tenant_id": "acme", "texts": items(4)}  # over /predict's 2, within /suggest's 4
    assert both_ways(CAPS, "/predict", json.dumps(texts).encode()) == ["too_many_texts"] * 2
    assert both_ways(CAPS, "/tenants/acme/suggest", json.dumps(texts).encode()) == [texts, texts]
    assert both_ways(CAPS, "/admin/keys", json.dumps({"tenants": items(50)}).encode())[0] == {"tenants": items(50)}


def test_every_other_container_has_the_generic_cap() -> None:
    deep_list = {"texts": ["a"], "x": {"y": [items(7)]}}
    wide_object = {f"k{i}": i for i in range(7)}
    example_object = {"examples": [{"text": "t", "label": "a", **{f"k{i}": 1 for i in range(5)}}]}
    for path, value in (("/predict", deep_list), ("/predict", wide_object), ("/adapt", example_object)):
        assert both_ways(CAPS, path, json.dumps(value).encode()) == ["too_many_items"] * 2


def test_the_refusal_names_where_and_the_limit() -> None:
    body = json.dumps({"examples": [{"text": "t", "labels": items(1)}, {"text": "t", "labels": items(9)}]})
    with pytest.raises(ServiceError) as refused:
        CAPS.parse_stepwise(body.encode(), CAPS.shape("/adapt"))
    assert refused.value.message == "examples[1].labels: more than 3 labels; the limit is 3"
    with pytest.raises(ServiceError) as counted:
        CAPS.loads_checked(body.encode(), CAPS.shape("/adapt"))
    assert counted.value.message == "examples[1].labels: 9 labels; the limit is 3"


def test_nesting_deeper_than_the_bound_is_invalid_json() -> None:
    assert both_ways(CAPS, "/predict", b"[" * 8 + b"]" * 8) == [[[[[[[[[]]]]]]]]] * 2
    for depth in (9, 100_000):
        assert both_ways(CAPS, "/predict", b"[" * depth + b"]" * depth) == ["invalid_json"] * 2
    assert both_ways(CAPS, "/predict", b'{"a": ' * 9 + b"1" + b"}" * 9) == ["invalid_json"] * 2


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1,]", b'{"a": 1,}', b'{"a" 1}', b"[1 2]", b"1 2", b'"\x01"', b"\xff\xfe\xfd", b'"\xc3"'],
)
def test_invalid_json_and_utf8_are_refused_both_ways(body: bytes) -> None:
    assert both_ways(CAPS, "/predict", body) == ["invalid_json"] * 2


def test_a_repeated_top_level_tenant_id_is_refused_whatever_the_size() -> None:
    small = b'{"tenant_id": "a", "texts": ["x"], "tenant_id": "b"}'
    large = b'{"tenant_id": "a", "texts": [' + b'"x", ' * 30_000 + b'"x"], "tenant_id": "b"}'
    for body in (small, large):
        with pytest.raises(ServiceError) as refused:
            LOOSE.parse("/any", body)
        assert refused.value.code == "invalid_json" and "tenant_id" in refused.value.message
    nested = b'{"tenant_id": "a", "x": {"tenant_id": 1, "tenant_id": 2}, "y": {"y": 1, "y": 2}}'
    assert LOOSE.parse("/any", nested) == json.loads(nested)


def test_a_huge_list_is_refused_at_its_cap_without_reading_the_rest() -> None:
    """What follows the cap's item is never parsed: here it is not even JSON, and the answer is still the cap's."""
    head = b'{"tenant_id": "acme", "examples": ['
    body = head + b'{"text": "t1", "label": "l1"}, ' * 100_000 + b"this is not JSON"
    with pytest.raises(ServiceError) as refused:
        BodyCaps().parse("/adapt", body)
    assert refused.value.code == "too_many_examples"
    assert refused.value.message == "examples: more than 5000 examples; the limit is 5000"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=6),
    max_leaves=40,
)
layouts = st.sampled_from(
    [
        {},
        {"separators": (",", ":")},
        {"indent": 2},
        {"indent": "\t", "separators": (" ,\r\n", " : ")},
        {"ensure_ascii": False},
    ]
)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal JSON types (`1`, `1.0` and `true` are equal in Python, not in JSON)."""
    return a == b and json.dumps(a) == json.dumps(b)


@settings(max_examples=300, deadline=None)
@given(value=json_values, layout=layouts, encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]))
def test_the_stepwise_walk_gives_json_loads_value(value: Any, layout: dict[str, Any], encoding: str) -> None:
    body = json.dumps(value, **layout).encode(encoding)
    assert same(LOOSE.parse_stepwise(body, LOOSE.shape("/any")), json.loads(body))


@settings(max_examples=300, deadline=None)
@given(value=json_values, data=st.data())
def test_the_stepwise_walk_refuses_what_json_loads_refuses(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value)
    at = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(["", *'{}[],:"\\ 0-.etnx']))
    broken = (text[:at] + edit + text[at + 1 :]).encode()
    try:
        expected: Any = json.loads(broken)
    except ValueError:
        expected = "invalid_json"
    outcomes = both_ways(LOOSE, "/any", broken)
    assert same(outcomes[0], expected) and same(outcomes[1], expected)


def run_read_json(scope: dict[str, Any], body: bytes) -> tuple[Any, Any]:
    async def twice() -> tuple[Any, Any]:
        return await read_json(scope, body), await read_json(scope, body)

    return anyio.run(twice)


class CountingCaps(BodyCaps):
    """Caps that record the thread of every parse."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def parse(self, path: str, body: bytes) -> Any:
        self.threads.append(threading.current_thread())
        return super().parse(path, body)


class App:
    def __init__(self, caps: BodyCaps) -> None:
        self.state = type("State", (), {"body_caps": caps})()


def test_a_body_is_parsed_once_per_request_and_a_large_one_off_the_loop() -> None:
    caps = CountingCaps()
    small = json.dumps({"tenant_id": "acme", "texts": ["x"]}).encode()
    large = json.dumps({"tenant_id": "acme", "texts": ["x" * 400] * 200}).encode()
    assert len(large) > LOOP_BYTES
    for body in (small, large):
        scope = {"type": "http", "path": "/predict", "app": App(caps)}
        first, second = run_read_json(scope, body)
        assert first is second and first == json.loads(body)
    small_thread, large_thread = caps.threads
    assert small_thread is threading.current_thread() and large_thread is not small_thread


def test_a_refusal_is_remembered_for_the_request() -> None:
    caps = CountingCaps()
    scope = {"type": "http", "path": "/api/predict", "root_path": "/api", "app": App(caps)}
    body = json.dumps({"tenant_id": "acme", "texts": items(300)}).encode()  # over the default 256
    for _ in range(2):
        with pytest.raises(ServiceError) as refused:
            anyio.run(read_json, scope, body)
        assert refused.value.code == "too_many_texts"
    assert len(caps.threads) == 1
