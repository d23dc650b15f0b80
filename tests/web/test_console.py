"""The /console page: public and offline (no CDN), and in headless Chromium it shows a tenant's report.

Screenshots are kept as test artifacts in tests/artifacts/ (ignored by git): console.png (auth off, via
`chromium --screenshot`) and console_auth.png (auth on, the key typed in through chromedriver's WebDriver API).
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from harness.ports import free_port
from harness.server_proc import serve_in_thread
from tests.web.conftest import ADMIN, ADMIN_KEY, SUPPORT, TICKETS, support
from tests.web.test_docs_offline import ARTIFACTS, CHROMIUM, browse, chromium

CHROMEDRIVER = shutil.which("chromedriver")
EXAMPLES = SUPPORT + support(("lonely", ["close my account for good"]))


def test_console_is_public_and_references_only_local_assets(make_client: Callable[..., TestClient]) -> None:
    client = make_client()  # auth on: the page loads without a key, its API calls need one
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)=["']https?:""", page.text)
    for asset in ("console.js", "console.css"):
        response = client.get(f"/console-assets/{asset}")
        assert response.status_code == 200 and len(response.text) > 500
    script = client.get("/console-assets/console.js").text
    assert "innerHTML" not in script  # server data only ever goes in as text
    assert client.get("/console-assets/__init__.py").status_code == 404
    assert client.get("/tenants").status_code == 401


@pytest.fixture
def live(real_model, request: pytest.FixtureRequest) -> Iterator[str]:
    auth = getattr(request, "param", False)
    settings = Settings(checkpoint="none", store="memory", auth_enabled=auth, admin_key=ADMIN_KEY, _env_file=None)
    with serve_in_thread(create_app(settings, model=real_model)) as base:
        response = httpx.post(f"{base}/adapt", json={"tenant_id": "acme", "examples": EXAMPLES}, headers=ADMIN)
        assert response.status_code == 200, response.text
        yield base


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_console_shows_the_report_in_headless_chromium(live: str, tmp_path: Path) -> None:
    url = f"{live}/console#tenant=acme"
    dom, violations = browse(url, tmp_path / "profile", "--dump-dom")
    assert violations == []
    assert '<section id="report">' in dom, "the report section is still hidden"
    assert re.search(r'id="accuracy">\d+\.\d %<', dom), "no accuracy shown"
    report = httpx.post(f"{live}/tenants/acme/evaluate", json={}).json()["report"]
    assert f'id="accuracy">{100 * report["accuracy"]:.1f} %<' in dom  # the measured accuracy is the headline
    projection = f"projection, not measured: {100 * report['projected_accuracy']:.1f} % with all 3.0 examples"
    assert projection in dom
    assert "Not evaluable (a single example): lonely" in dom
    assert 'class="heatmap"' in dom and dom.count('class="bar"') == 4  # a bar per label
    assert "only 1 example(s)" in dom  # labels needing examples

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "console.png"
    screenshot.unlink(missing_ok=True)
    chromium(url, tmp_path / "profile", f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_console_shows_a_multilabel_report(live: str, tmp_path: Path) -> None:
    body = {"tenant_id": "tickets", "task": "multi_label", "examples": TICKETS}
    assert httpx.post(f"{live}/adapt", json=body, headers=ADMIN).status_code == 200
    dom = chromium(f"{live}/console#tenant=tickets", tmp_path / "profile", "--dump-dom")
    assert '<section id="report">' in dom, "the report section is still hidden"
    assert re.search(r'id="accuracy">\d+\.\d %<', dom) and 'id="headline-name">micro-F1<' in dom
    assert re.search(r'<small id="projection"[^>]* hidden=""></small>', dom)  # no projection for micro-F1
    assert 'id="third-name">exact match<' in dom and "1 negative example(s)" in dom
    assert dom.count('class="bar"') == 2 and "Thresholds per label" in dom


class WebDriver:
    """The few W3C WebDriver calls the test needs, over chromedriver's HTTP API (no selenium)."""

    def __init__(self, base: str) -> None:
        self.base = base
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"],
            },
        }
        reply = httpx.post(f"{base}/session", json={"capabilities": {"alwaysMatch": capabilities}}, timeout=60)
        self.session = f"{base}/session/{reply.json()['value']['sessionId']}"

    def call(self, method: str, path: str, body: dict | None = None) -> object:
        reply = httpx.request(method, f"{self.session}{path}", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()["value"]

    def element(self, css: str) -> str:
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))  # type: ignore[union-attr]

    def text(self, css: str) -> str:
        return str(self.call("GET", f"/element/{self.element(css)}/text"))

    def wait_for_text(self, css: str, pattern: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.text(css)
            if re.search(pattern, text) or time.monotonic() > deadline:
                return text
            time.sleep(0.2)

    def close(self) -> None:
        httpx.delete(self.session, timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium and chromium-driver")
@pytest.mark.parametrize("live", [True], indirect=True)
def test_console_with_auth_takes_the_typed_key(live: str) -> None:
    port = free_port()
    driver_process = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/status", timeout=2).json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "chromedriver did not start"
            time.sleep(0.1)
        driver = WebDriver(base)
        try:
            driver.call("POST", "/url", {"url": f"{live}/console#tenant=acme"})
            assert "401" in driver.wait_for_text("#status", "401")  # no key yet
            driver.call("POST", f"/element/{driver.element('#key')}/value", {"text": ADMIN_KEY})
            driver.call("POST", f"/element/{driver.element('#connect button')}/click", {})
            assert re.search(r"report for acme v1", driver.wait_for_text("#status", "report for acme"))
            assert re.fullmatch(r"\d+\.\d %", driver.text("#accuracy"))
            texts = "my card is late\nhow much are euros"
            driver.call("POST", f"/element/{driver.element('#predict-texts')}/value", {"text": texts})
            driver.call("POST", f"/element/{driver.element('#predict')}/click", {})
            assert "predicted 2 text(s)" in driver.wait_for_text("#status", "predicted")
            assert "card_arrival" in driver.text("#predictions")
            assert "acme: encoder minilm" in driver.text("#tenant-info")  # the tier, from the tenant's record
            first_row = "#predictions tbody tr:first-child"
            evidence = driver.text(f"{first_row} ul.evidence")  # explain: 3, the predicted label's first
            assert re.match(r"card_arrival: .+ \(\d\.\d\d\)", evidence) and evidence.count("card_arrival: ") == 3
            assert len(evidence.splitlines()) > 3  # then the runner-up's (up to 3)
            driver.call("POST", f"/element/{driver.element(f'{first_row} option[value=refund]')}/click", {})
            driver.call("POST", f"/element/{driver.element(f'{first_row} td.correct button')}/click", {})
            assert "added as refund" in driver.wait_for_text("#status", "corrected")  # feedback, then re-predicted
            assert driver.text(f"{first_row} td.predicted") == "refund"
            assert "version 2" in driver.text("#tenant-info")

            pasted = (
                'text,label\n"close my account, please",lonely\n{"text": "shut my account down", "label": "lonely"}'
            )
            driver.call("POST", f"/element/{driver.element('#adapt-data')}/value", {"text": pasted})
            driver.call("POST", f"/element/{driver.element('#adapt')}/click", {})
            assert "report for acme v3" in driver.wait_for_text("#status", "report for acme v3")
            assert "acme: version 3, 13 examples" in driver.text("#adapt-result")
            assert "Not evaluable" not in driver.text("#report")  # lonely now has 3 examples

            pool = "where is the card I ordered\nyen to dollar rate\nmoney back for a broken item"
            driver.call("POST", f"/element/{driver.element('#suggest-texts')}/value", {"text": pool})
            driver.call("POST", f"/element/{driver.element('#suggest')}/click", {})
            assert "3 suggestion(s) from 3 text(s)" in driver.wait_for_text("#status", "suggestion")
            assert "yen to dollar rate" in driver.text("#suggestions")
            traffic = {"texts": ["card not delivered yet", "rate for yen", "refund for a broken lamp", "hello"]}
            kept = httpx.post(f"{live}/tenants/acme/unlabeled", json=traffic, headers=ADMIN, timeout=30)
            assert kept.status_code == 200, kept.text
            driver.call("POST", f"/element/{driver.element('#suggest-texts')}/clear", {})
            driver.call("POST", f"/element/{driver.element('#suggest')}/click", {})  # no texts: the pool
            assert "4 suggestion(s) from 4 unlabeled pool text(s)" in driver.wait_for_text("#status", "pool")
            png = base64.b64decode(str(driver.call("GET", "/screenshot")))
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "console_auth.png").write_bytes(png)
            assert len(png) > 10_000
        finally:
            driver.close()
    finally:
        driver_process.terminate()
        driver_process.wait(timeout=10)
