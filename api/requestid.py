"""X-Request-ID through asgi-correlation-id: taken from the request (sanitized, bounded) or made
up, echoed on every response, and read by the log filter (`shared.logs`) from the library's
`correlation_id` context variable."""

from __future__ import annotations

import re
import uuid

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI

HEADER = "X-Request-ID"
MAX_CHARS = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")


def sanitize(given: str) -> str:
    """What is safe to log and echo (no spaces, quotes or control characters), up to MAX_CHARS;
    a new id when nothing usable is left."""
    return _UNSAFE.sub("", given)[:MAX_CHARS] or uuid.uuid4().hex


def install_request_id(app: FastAPI) -> None:
    """Add it last, so it is the outermost middleware and every answer carries the id. No
    `validator`: `sanitize` keeps what it can and replaces the rest without a warning a line."""
    app.add_middleware(
        CorrelationIdMiddleware, header_name=HEADER, validator=None, transformer=sanitize
    )
