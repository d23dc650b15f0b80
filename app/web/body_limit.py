"""Request bodies over `max_bytes` get 413, counting the streamed bytes, chunked uploads included.

Not a middleware of its own: `app.web.edge.EdgeMiddleware` runs it, with the request context and access checks,
in one ASGI layer.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from app.web.errors import error_response


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes the limit; the app's handler or the edge middleware answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


class BodyLimit:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def declared_too_large(self, scope: Scope) -> bool:
        """The `Content-Length` header alone says the body is over the limit."""
        declared = dict(scope.get("headers", ())).get(b"content-length")
        return declared is not None and declared.isdigit() and int(declared) > self.max_bytes

    def counting(self, receive: Receive) -> Receive:
        """`receive` that raises `BodyTooLarge` once the streamed body passes the limit."""
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counting_receive

    async def reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", f"request body larger than {self.max_bytes} bytes")
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
