"""Swagger UI and ReDoc come from the installed wheel (no CDN) and render in headless Chromium, offline, under
their Content Security Policy."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.app import create_app
from harness.server_proc import serve_in_thread

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1280,2000",
    "--virtual-time-budget=10000",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # any CDN request would fail
]


def test_docs_pages_reference_only_local_assets(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "/docs-assets/" in html and "cdn." not in html and "fonts.googleapis" not in html, page
    for asset, marker in (("swagger-ui-bundle.js", "SwaggerUIBundle"), ("redoc.standalone.js", "Redoc")):
        response = client.get(f"/docs-assets/{asset}")
        assert response.status_code == 200 and marker in response.text[:2_000_000]
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/predict"]["post"]["security"] == [{"bearerAuth": []}]
    assert "429" in schema["paths"]["/predict"]["post"]["responses"]
    assert schema["paths"]["/healthz"]["get"]["security"] == []


@pytest.fixture
def live_server(real_model) -> Iterator[str]:
    """The app under a real uvicorn in a thread (docs need no store: memory, auth on)."""
    settings = Settings(checkpoint="none", store="memory", auth_enabled=True, _env_file=None)
    with serve_in_thread(create_app(settings, model=real_model)) as base:
        yield base


def browse(url: str, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Chromium's output for `url` (with `--dump-dom`: the rendered DOM) and the Content Security Policy
    violations the page's console reported."""
    assert CHROMIUM is not None
    logging = ["--enable-logging=stderr", "--v=0"]
    command = [CHROMIUM, *CHROMIUM_FLAGS, *logging, f"--user-data-dir={profile}", *extra, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, [line for line in console if "Content Security Policy" in line]


def chromium(url: str, profile: Path, *extra: str) -> str:
    return browse(url, profile, *extra)[0]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_docs_render_offline_in_headless_chromium(live_server: str, tmp_path: Path) -> None:
    dom, violations = browse(f"{live_server}/docs", tmp_path / "profile", "--dump-dom")
    assert violations == []
    assert "opblock" in dom, "Swagger UI did not render any operation"
    for path in ("/adapt", "/predict", "/tenants/{tenant_id}", "/admin/keys"):
        assert f'data-path="{path}"' in dom, path
    assert "authorize" in dom.lower()  # the bearer-key button

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "docs.png"
    screenshot.unlink(missing_ok=True)
    chromium(f"{live_server}/docs", tmp_path / "profile", f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")

    redoc, violations = browse(f"{live_server}/redoc", tmp_path / "profile", "--dump-dom")
    assert "Few-shot classification service" in redoc and "/predict" in redoc, "ReDoc did not render"
    assert [v for v in violations if "https://cdn.redoc.ly/" not in v] == []  # only its CDN logo is refused
