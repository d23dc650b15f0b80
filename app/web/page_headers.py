"""The security headers of the HTML pages (/docs, /redoc, /console, the OAuth2 redirect) and of their assets.

A page runs only scripts from this origin, plus the inline scripts of its own HTML, each allowed by its sha256;
it may not be framed, and connects, submits forms and loads images only here (images also as `data:` URLs).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import TypeVar

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_INLINE_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
R = TypeVar("R", bound=Response)


def _hashes(pattern: re.Pattern[str], html: str) -> list[str]:
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in pattern.findall(html)
    ]


def content_security_policy(html: str = "", *, script_made: bool = False) -> str:
    """The policy of a page whose HTML is `html`: its inline scripts and styles are allowed by hash. With
    `script_made` (ReDoc), styles its script injects and workers it starts from `blob:` URLs are allowed too."""
    scripts = " ".join(["'self'", *_hashes(_INLINE_SCRIPT, html)])
    styles = "'self' 'unsafe-inline'" if script_made else " ".join(["'self'", *_hashes(_INLINE_STYLE, html)])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            f"style-src {styles}",
            "img-src 'self' data:",
            "connect-src 'self'",
            *(["worker-src 'self' blob:"] if script_made else []),
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def page_headers(html: str = "", *, script_made: bool = False) -> dict[str, str]:
    """Every header an HTML page is sent with (see `content_security_policy` for `html` and `script_made`)."""
    return {
        "Content-Security-Policy": content_security_policy(html, script_made=script_made),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        **NOSNIFF,
    }


def secured(response: R, *, script_made: bool = False) -> R:
    """`response` (an in-memory HTML page) with `page_headers` for its own body."""
    response.headers.update(page_headers(bytes(response.body).decode(), script_made=script_made))
    return response


class AssetFiles(StaticFiles):
    """Static files sent with `X-Content-Type-Options: nosniff` (a script or style is never read as another type)."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(NOSNIFF)
        return response
