"""Process logging for `python -m api` and `python -m worker`.

Records carry the context they were logged in, from contextvars: `request_id`, `job_id`, `batch_id`
and `tenant`, where known (`bound()` sets them for a block, `bind()` for the rest of the current
task; an HTTP request's id is asgi-correlation-id's `correlation_id`, see api/requestid.py).
LOG_FORMAT picks the output: `json` (one object a line, for collectors), `text` (for people), or
`auto`: text on a terminal, JSON otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Literal

from asgi_correlation_id import correlation_id
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["auto", "json", "text"]
FIELDS = ("request_id", "job_id", "batch_id", "tenant")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Libraries that log every call at INFO; their warnings still show. mangum.http logs each request
# the Lambda API answers, which API Gateway's access log already records (docs/DEPLOYMENT.md).
QUIET = ("httpx", "httpcore", "mangum.http")

_context: ContextVar[Mapping[str, str]] = ContextVar("log_context", default=MappingProxyType({}))


def context() -> Mapping[str, str]:
    return _context.get()


def bind(**fields: str | None) -> None:
    """Add fields to the current context (the rest of this task, and tasks it starts)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Add fields to the context for the duration of the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context onto every record that reaches the handler, whichever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        request_id = correlation_id.get()
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """`FORMAT`, then the context as `[key=value ...]` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [f"{name}={getattr(record, name)}" for name in FIELDS if hasattr(record, name)]
        if not pairs:
            return line
        first, newline, rest = line.partition("\n")  # keep tracebacks below the context
        return f"{first} [{' '.join(pairs)}]{newline}{rest}"


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        JSON_FORMAT,
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


def resolve_format(log_format: LogFormat, stream: object = None) -> Literal["json", "text"]:
    if log_format != "auto":
        return log_format
    isatty = getattr(stream or sys.stderr, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(log_format: LogFormat = "auto", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()  # stderr
    chosen = resolve_format(log_format, handler.stream)
    handler.setFormatter(json_formatter() if chosen == "json" else TextFormatter(FORMAT))
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
