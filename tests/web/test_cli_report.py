"""`fewshot report --tenant ID --url ... [--key] [--json]` against a live server (auth on, then off)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from app.cli import main
from app.config import Settings
from app.web.app import create_app
from harness.server_proc import serve_in_thread
from tests.web.conftest import ADMIN, ADMIN_KEY, SUPPORT, TICKETS, support


@pytest.fixture(params=[True, False], ids=["auth", "no-auth"])
def live(request: pytest.FixtureRequest, real_model) -> Iterator[tuple[str, bool]]:
    settings = Settings(
        checkpoint="none", store="memory", auth_enabled=request.param, admin_key=ADMIN_KEY, _env_file=None
    )
    with serve_in_thread(create_app(settings, model=real_model)) as base:
        examples = SUPPORT + support(("lonely", ["close my account"]))
        response = httpx.post(f"{base}/adapt", json={"tenant_id": "acme", "examples": examples}, headers=ADMIN)
        assert response.status_code == 200, response.text
        yield base, request.param


def test_report_prints_tables_and_json(live: tuple[str, bool], capsys: pytest.CaptureFixture[str]) -> None:
    base, auth = live
    key = ["--key", ADMIN_KEY] if auth else []
    assert main(["report", "--tenant", "acme", "--url", base, *key]) == 0
    text = capsys.readouterr().out
    assert "tenant acme  version 1" in text and "accuracy" in text and "macro-F1" in text
    assert "not evaluable (one example): lonely" in text
    for label in ("card_arrival", "exchange_rate", "refund", "lonely"):
        assert label in text
    assert "labels needing examples" in text and "out-of-scope trade-off" in text

    assert main(["report", "--tenant", "acme", "--url", base, "--json", *key]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["tenant_id"] == "acme" and reply["report"]["not_evaluable"] == ["lonely"]


def test_report_errors_go_to_stderr(live: tuple[str, bool], capsys: pytest.CaptureFixture[str]) -> None:
    base, auth = live
    key = ["--key", ADMIN_KEY] if auth else []
    assert main(["report", "--tenant", "nobody", "--url", base, *key]) == 1
    assert "404 unknown_tenant" in capsys.readouterr().err
    if auth:
        assert main(["report", "--tenant", "acme", "--url", base, "--key", "fsk_wrong"]) == 1
        assert "401 invalid_api_key" in capsys.readouterr().err
    assert main(["report", "--tenant", "acme", "--url", "http://127.0.0.1:9", *key]) == 1
    assert "cannot reach" in capsys.readouterr().err


def test_report_prints_a_multilabel_tenants_tables(live: tuple[str, bool], capsys: pytest.CaptureFixture[str]) -> None:
    base, auth = live
    body = {"tenant_id": "tickets", "task": "multi_label", "examples": TICKETS}
    assert httpx.post(f"{base}/adapt", json=body, headers=ADMIN).status_code == 200
    key = ["--key", ADMIN_KEY] if auth else []
    assert main(["report", "--tenant", "tickets", "--url", base, *key]) == 0
    text = capsys.readouterr().out
    assert "micro-F1" in text and "exact match" in text and "threshold" in text and "(1 negative)" in text
    assert "billing" in text and "bug" in text
