"""The console: a static page (HTML, JS, CSS in this folder; no CDN) over the public API, served at /console."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse

from app.web.page_headers import AssetFiles, page_headers

CONSOLE_DIR = Path(__file__).resolve().parent
ASSETS_URL = "/console-assets"


def install_console(app: FastAPI) -> None:
    """GET /console (the page) and /console-assets/ (its script and style), with the pages' security headers;
    public, like /docs."""
    app.mount(ASSETS_URL, AssetFiles(directory=CONSOLE_DIR / "assets"), name="console-assets")

    @app.get("/console", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html", headers=page_headers())
