"""X-Request-ID: taken from the request (sanitized, bounded) or made up, echoed on every response,
and bound to the log context for everything logged while the request is handled."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import bound

HEADER = "X-Request-ID"
MAX_CHARS = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")


def sanitize(given: str | None) -> str | None:
    """Keep what is safe to log and echo (no spaces, quotes or control characters), up to
    MAX_CHARS; None when nothing usable is left."""
    cleaned = _UNSAFE.sub("", given or "")[:MAX_CHARS]
    return cleaned or None


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_of(request: Request) -> str | None:
    """The request's id, also after the middleware's context has ended (unhandled errors)."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): the handler runs in this task, so the log context set
    here is the one its log records see."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sanitize(Headers(scope=scope).get(HEADER)) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)
