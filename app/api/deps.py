"""Dependencies: the process runtime built in the lifespan."""

from __future__ import annotations

from fastapi import Request

from app.services.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime
