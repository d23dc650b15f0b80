"""/tenants/{id}/unlabeled with the real encoder and a real Redis: the pool is bounded, kept per tenant, deleted
with the tenant; /predict keeps its texts there on request; /suggest picks from it when sent no texts; /adapt says
whether it used it and why (and never looks at another tenant's pool); bad bodies are 4xx with a code; a key of
another tenant cannot touch it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.conftest import ADMIN, SUPPORT, assert_error, bearer

TRAFFIC = [
    *(f"my card {w} has not arrived" for w in ("visa", "debit", "new", "metal", "replacement", "plastic", "gold")),
    *(f"where is my {w} card" for w in ("visa", "debit", "new", "metal", "replacement", "plastic", "gold")),
    *(f"what is the {c} exchange rate" for c in ("yen", "euro", "dollar", "pound", "franc", "peso", "rupee")),
    *(f"convert {c} to dollars" for c in ("yen", "euro", "pounds", "francs", "pesos", "rupees", "krona")),
    *(f"refund my {w} order" for w in ("shoe", "book", "phone", "laptop", "coat", "ticket", "hotel")),
    *(f"I want my money back for the {w}" for w in ("shoes", "book", "phone", "laptop", "coat", "ticket", "hotel")),
]


def _adapt(client: TestClient, tenant: str, **options: object) -> dict:
    reply = client.post("/adapt", json={"tenant_id": tenant, "examples": SUPPORT, **options})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_pool_keeps_distinct_texts_up_to_its_cap_and_goes_with_the_tenant(make_client) -> None:
    client = make_client(auth_enabled=False, max_unlabeled=5)
    assert_error(client.post("/tenants/acme/unlabeled", json={"texts": ["hello there"]}), 404, "unknown_tenant")
    _adapt(client, "acme")
    first = client.post("/tenants/acme/unlabeled", json={"texts": ["a b", "c d", "a b"]}).json()
    assert (first["added"], first["repeated"], first["dropped"], first["size"]) == (2, 1, 0, 2)
    over = client.post("/tenants/acme/unlabeled", json={"texts": ["e f", "g h", "i j", "k l"]}).json()
    assert (over["added"], over["dropped"], over["size"], over["max_texts"]) == (4, 1, 5, 5)
    assert client.get("/tenants/acme/unlabeled").json()["size"] == 5
    _adapt(client, "acme")  # a new version keeps the pool
    assert client.get("/tenants/acme/unlabeled").json()["size"] == 5
    assert client.delete("/tenants/acme/unlabeled").json() == {"tenant_id": "acme", "removed": 5}
    client.post("/tenants/acme/unlabeled", json={"texts": ["m n"]})
    assert client.delete("/tenants/acme").status_code == 204
    assert_error(client.get("/tenants/acme/unlabeled"), 404, "unknown_tenant")
    _adapt(client, "acme")
    assert client.get("/tenants/acme/unlabeled").json()["size"] == 0


def test_bad_pool_bodies_are_4xx_with_a_code(client: TestClient) -> None:
    _adapt(client, "acme")
    assert_error(client.post("/tenants/acme/unlabeled", json={"texts": []}), 422, "no_texts")
    assert_error(client.post("/tenants/acme/unlabeled", json={"texts": ["ok", "   "]}), 422, "empty_text")
    assert_error(client.post("/tenants/acme/unlabeled", json={"texts": ["x" * 201]}), 422, "text_too_long")
    assert_error(client.post("/tenants/acme/unlabeled", json={"texts": ["t"] * 51}), 422, "too_many_texts")
    assert client.post("/tenants/acme/unlabeled", json={"texts": "not a list"}).status_code == 422
    assert client.get("/tenants/acme/unlabeled").json()["size"] == 0  # nothing of a refused request is kept


def test_suggest_without_texts_picks_from_the_pool_minus_the_support_set(client: TestClient) -> None:
    _adapt(client, "acme")
    assert_error(client.post("/tenants/acme/suggest", json={"k": 2}), 422, "no_texts")
    pool = [*TRAFFIC[:6], SUPPORT[0]["text"]]
    client.post("/tenants/acme/unlabeled", json={"texts": pool})
    reply = client.post("/tenants/acme/suggest", json={"k": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["source"] == "unlabeled" and body["pool_size"] == 6
    assert {s["text"] for s in body["suggestions"]} <= set(TRAFFIC[:6])
    given = client.post("/tenants/acme/suggest", json={"texts": ["where is my card"], "k": 1}).json()
    assert given["source"] == "request"


def test_adapt_says_whether_the_pool_was_used_and_why(client: TestClient) -> None:
    assert _adapt(client, "acme")["unlabeled"]["reason"] == "the tenant has no unlabeled texts"
    client.post("/tenants/acme/unlabeled", json={"texts": TRAFFIC[:10]})
    small = _adapt(client, "acme")["unlabeled"]
    assert not small["used"] and small["pool_size"] == 10 and "not tried" in small["reason"]
    client.post("/tenants/acme/unlabeled", json={"texts": TRAFFIC})
    tried = _adapt(client, "acme")["unlabeled"]
    held = {e["text"] for e in SUPPORT} & set(TRAFFIC)  # a text the support set labels is not unlabeled
    assert held and tried["pool_size"] == len(TRAFFIC) - len(held) and tried["cv_accuracy_with"] is not None
    assert tried["used"] == (tried["cv_accuracy_with"] > tried["cv_accuracy_without"])
    off = _adapt(client, "acme", unlabeled="off")["unlabeled"]
    assert (off["mode"], off["used"]) == ("off", False)
    append = client.post("/adapt", json={"tenant_id": "acme", "mode": "append", "examples": [SUPPORT[0]]}).json()
    assert append["unlabeled"]["mode"] == "off"  # an append keeps the tenant's mode
    assert client.get("/tenants/acme").status_code == 200


def test_another_tenants_pool_is_never_looked_at(client: TestClient) -> None:
    _adapt(client, "acme")
    client.post("/tenants/acme/unlabeled", json={"texts": TRAFFIC})
    other = _adapt(client, "globex")["unlabeled"]
    assert other["pool_size"] == 0 and not other["used"]
    assert client.get("/tenants/globex/unlabeled").json()["size"] == 0


def test_a_key_of_another_tenant_cannot_touch_the_pool(make_client) -> None:
    client = make_client()
    assert client.post("/adapt", json={"tenant_id": "acme", "examples": SUPPORT}, headers=ADMIN).status_code == 200
    key = client.post("/admin/keys", json={"tenants": ["other"]}, headers=ADMIN).json()["key"]
    for method, body in (("POST", {"texts": ["where is my card"]}), ("GET", None), ("DELETE", None)):
        answer = client.request(method, "/tenants/acme/unlabeled", json=body, headers=bearer(key))
        assert_error(answer, 403, "forbidden_tenant")


def test_predict_can_keep_its_texts_in_the_pool(client: TestClient) -> None:
    _adapt(client, "acme")
    texts = ["where is my new card", "euro rate today"]
    plain = client.post("/predict", json={"tenant_id": "acme", "texts": texts}).json()
    assert plain["unlabeled_pool_size"] is None and client.get("/tenants/acme/unlabeled").json()["size"] == 0
    kept = client.post("/predict", json={"tenant_id": "acme", "texts": texts, "keep_unlabeled": True})
    assert kept.status_code == 200, kept.text
    assert kept.json()["unlabeled_pool_size"] == 2
    assert [p["label"] for p in kept.json()["predictions"]] == [p["label"] for p in plain["predictions"]]
    strict = client.post("/predict", json={"tenant_id": "acme", "texts": texts, "keep_unlabeled": "yes"})
    assert strict.status_code == 422
    assert client.get("/tenants/globex/unlabeled").status_code == 404  # nothing kept for anyone else
