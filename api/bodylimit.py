"""Refuse request bodies over the size limit with 413, by Content-Length or by bytes received
(OpenAI's error shape under /openai/)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response
from api.openai.errors import in_dialect, openai_error


class BodyLimitMiddleware:
    """`limit` bytes per request body; `overrides` maps a path prefix to its own limit
    (e.g. batches). Chunked bodies are counted as they arrive, so none is ever held whole."""

    def __init__(
        self, app: ASGIApp, limit: int, overrides: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.overrides = dict(overrides or {})

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides.items():
            if path.startswith(prefix):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(limit, scope["path"])(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large_error(limit)
            return message

        await self.app(scope, receive_within_limit, send)


def _message(limit: int) -> str:
    return f"request body is larger than {limit} bytes"


def _too_large_error(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", _message(limit))


def _too_large(limit: int, path: str) -> ASGIApp:
    """Answered before any route (by Content-Length): in the dialect of the path."""
    answer = openai_error if in_dialect(path) else error_response
    return answer(413, "payload_too_large", _message(limit), headers={"Connection": "close"})
