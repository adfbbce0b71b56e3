"""Refuse request bodies over the size limit with 413, by Content-Length or by bytes received
(OpenAI's error shape under /openai/).

Before answering, the rest of the body is read and thrown away (at most DRAIN_MAX_BYTES, within
DRAIN_S): a server that answers and closes while the client is still sending makes the kernel
reset the connection, and most clients (the `openai` SDK, httpx, requests) send the whole body
before reading, so they would see the reset instead of the 413. The server cannot drain after
answering: once the response is complete, uvicorn ends the request's `receive`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response
from api.openai.errors import in_dialect, openai_error

log = logging.getLogger(__name__)
DRAIN_MAX_BYTES = 256 * 1024 * 1024  # past this the connection is just closed (and reset)
DRAIN_S = 30.0


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
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            if "100-continue" not in headers.get("expect", "").lower():  # else nothing is sent
                await _drain(receive, int(declared))
            await _too_large(limit, scope["path"])(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body"):
                        await _drain(receive, DRAIN_MAX_BYTES)
                    raise _too_large_error(limit)
            return message

        await self.app(scope, receive_within_limit, send)


async def _drain(receive: Receive, expected: int) -> None:
    """Read and drop what the client still sends, so it reads the 413 instead of a reset;
    nothing when more than DRAIN_MAX_BYTES would come, and no longer than DRAIN_S."""
    if expected > DRAIN_MAX_BYTES:
        return
    left = expected
    with anyio.move_on_after(DRAIN_S):
        try:
            while left > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                left -= len(message.get("body", b""))
                if not message.get("more_body"):
                    return
        except ApiError:  # the body stalled (HTTP_BODY_TIMEOUT_S): stop waiting for it
            log.info("an oversized body stalled while it was being drained")


def _message(limit: int) -> str:
    return f"request body is larger than {limit} bytes"


def _too_large_error(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", _message(limit))


def _too_large(limit: int, path: str) -> ASGIApp:
    """Answered before any route (by Content-Length): in the dialect of the path."""
    answer = openai_error if in_dialect(path) else error_response
    return answer(413, "payload_too_large", _message(limit), headers={"Connection": "close"})
