"""The routers' route class: a route's JSON body comes from `app.web.json_body.read_json` (parsed once per
request, off the event loop when large, within the endpoint's caps), never from FastAPI's `json.loads` on the
loop. FastAPI's documented custom `Request` and `APIRoute` pattern."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.web.json_body import read_json


class JsonBodyRequest(Request):
    """A request whose `json()` is `read_json` of its body (the access gate's parse when it made one)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = await read_json(self.scope, await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def body_read_first(request: Request) -> Response:
            request = JsonBodyRequest(request.scope, request.receive)
            if await request.body():
                await request.json()  # a refused body raises `ServiceError` here, answered 422 with its code
            return await handler(request)

        return body_read_first
