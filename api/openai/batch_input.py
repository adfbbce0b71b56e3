"""An OpenAI batch input file, read a line at a time into the native batch's requests.

Each line must be `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`
with a body that POST /openai/v1/chat/completions would accept (the same translation,
`ChatCompletionCreate.job()`). A good line becomes a native request written to a spool; a bad one
becomes an error `{code, line, message, param}`, as OpenAI lists them in a failed batch's
`errors`. The spool is read back lazily (api/batch_body.py's `NdjsonRequests`): the API holds
the offsets of the requests, not the requests.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from api.batch_body import SPOOL_MEMORY_BYTES, NdjsonRequests
from api.jsonbody import loads, reason
from api.openai.schemas import ChatCompletionCreate
from shared.errors import UnknownModel
from shared.model_catalog import ModelCatalog
from shared.models import MAX_CUSTOM_ID_CHARS, BatchItem

ENDPOINT = "/v1/chat/completions"
MAX_ERRORS = 100  # a file with more bad lines reports its first hundred


class LineError(BaseModel):
    """One entry of a failed batch's `errors.data` (OpenAI's BatchError)."""

    code: str = Field(description="What is wrong.", examples=["invalid_json_line"])
    line: int | None = Field(None, description="The line of the input file (from 1).")
    message: str = Field(description="Why, in words.")
    param: str | None = Field(None, description="The line's field at fault, if one is.")


class BadLine(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class BatchInput:
    """What a file held: its requests (when every line was good) or what was wrong with it."""

    spool: IO[bytes]
    offsets: array[int] = field(default_factory=lambda: array("q"))
    errors: list[LineError] = field(default_factory=list)

    def requests(self) -> NdjsonRequests:
        return NdjsonRequests(self.spool, self.offsets, array("l", [0]) * len(self.offsets))

    def close(self) -> None:
        self.spool.close()


def read_input(source: IO[bytes], models: ModelCatalog, max_requests: int) -> BatchInput:
    """Check every line of `source` (rewound); blocking: run it in a thread."""
    parsed = BatchInput(tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))  # noqa: SIM115
    first_line: dict[str, int] = {}
    for count, (number, raw) in enumerate(_lines(source), start=1):
        if len(parsed.errors) >= MAX_ERRORS:
            break
        if count > max_requests:
            message = f"a batch holds at most {max_requests} requests; line {number} is one more"
            parsed.errors.append(LineError(code="too_many_requests", line=number, message=message))
            break
        try:
            item = parse_line(raw, models)
            if (seen := first_line.setdefault(item.custom_id, number)) != number:
                message = f"custom_id {item.custom_id!r} is already used on line {seen}"
                raise BadLine("duplicate_custom_id", message, "custom_id")
        except BadLine as bad:
            error = LineError(code=bad.code, line=number, message=bad.message, param=bad.param)
            parsed.errors.append(error)
            continue
        parsed.offsets.append(parsed.spool.tell())
        parsed.spool.write(item.model_dump_json(exclude_defaults=True).encode() + b"\n")
    if not parsed.offsets and not parsed.errors:
        parsed.errors.append(LineError(code="empty_file", message="the input file has no requests"))
    parsed.spool.seek(0)
    return parsed


def _lines(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines (numbers count every line, as an editor shows them)."""
    source.seek(0)
    for number, raw in enumerate(source, start=1):
        if raw.strip():
            yield number, raw


def parse_line(raw: bytes, models: ModelCatalog) -> BatchItem:
    try:
        line = loads(raw)
    except json.JSONDecodeError as exc:
        raise BadLine("invalid_json_line", f"not valid JSON: {reason(exc)}") from None
    if not isinstance(line, dict):
        raise BadLine("invalid_request", "a line must be a JSON object")
    custom_id = _custom_id(line.get("custom_id"))
    if line.get("method") != "POST":
        raise BadLine("invalid_method", "method must be POST", "method")
    if line.get("url") != ENDPOINT:
        raise BadLine("invalid_url", f"url must be {ENDPOINT} (this batch's endpoint)", "url")
    body = line.get("body")
    if not isinstance(body, dict):
        raise BadLine("invalid_request", "body must be a chat completion request object", "body")
    return BatchItem.model_validate(
        {**_job(body, models).model_dump(exclude_defaults=True), "custom_id": custom_id}
    )


def _custom_id(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CUSTOM_ID_CHARS:
        message = f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters"
        raise BadLine("invalid_custom_id", message, "custom_id")
    return value


def _job(body: dict[str, Any], models: ModelCatalog) -> Any:
    """The native job the body becomes, or BadLine naming the body's field at fault."""
    try:
        request = ChatCompletionCreate.model_validate(body)
        job = request.job()
    except ValidationError as exc:
        raise _invalid(exc.errors()) from None
    except RequestValidationError as exc:
        raise _invalid([{**e, "loc": e["loc"][1:]} for e in exc.errors()]) from None
    if request.stream:
        raise BadLine("unsupported_parameter", "stream is not available in a batch", "body.stream")
    try:
        models.check(request.model)
    except UnknownModel as exc:
        raise BadLine("model_not_found", str(exc), "body.model") from None
    return job


def _invalid(errors: Any) -> BadLine:
    error = errors[0]
    where = ".".join(str(p) for p in error["loc"])
    param = f"body.{where}" if where else "body"
    return BadLine("invalid_request", f"{param}: {error['msg']}", param)
