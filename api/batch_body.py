"""Parse POST /v1/batches bodies (JSON or NDJSON), naming the bad line.

The body is spooled (to disk past SPOOL_MEMORY_BYTES) rather than held, and an NDJSON body is
never held parsed: it is validated a line at a time, then its requests are read again from the
spool, one at a time, whenever the batch is built (`NdjsonRequests`). A JSON body is one document
and is parsed whole.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from array import array
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, overload

from pydantic import ValidationError

from api.errors import ApiError, FieldError
from api.jsonbody import is_json, loads, media_type, reason
from shared.keys import Priority
from shared.models import BatchCreate, BatchItem

NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/ndjson"}
SPOOL_MEMORY_BYTES = 1 << 20


@dataclass
class ParsedBatch:
    requests: Sequence[BatchItem]
    webhook_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    priority: Priority | None = None


async def spool(chunks: AsyncIterator[bytes]) -> tuple[IO[bytes], hashlib._Hash]:
    """The body in a spooled temporary file (rewound), and the SHA-256 of what was read."""
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - returned
    digest = hashlib.sha256()
    async for chunk in chunks:
        body.write(chunk)
        digest.update(chunk)
    body.seek(0)
    return body, digest


def parse_batch(
    body: IO[bytes],
    content_type: str | None,
    *,
    max_requests: int,
    webhook_url: str | None,
    priority: Priority | None = None,
) -> ParsedBatch:
    """The batch's requests and options; `webhook_url` and `priority` (query parameters) are
    the NDJSON body's, and a JSON body's own fields win over them."""
    if media_type(content_type) in NDJSON_TYPES:
        return ParsedBatch(NdjsonRequests.read(body, max_requests), webhook_url, {}, priority)
    if is_json(content_type):
        batch = parse_json(body.read(), max_requests)
        return ParsedBatch(
            batch.requests,
            batch.webhook_url or webhook_url,
            batch.metadata,
            batch.priority or priority,
        )
    raise ApiError(
        415,
        "unsupported_media_type",
        "Content-Type must be application/json or application/x-ndjson",
    )


def parse_json(body: bytes, max_requests: int) -> BatchCreate:
    try:
        document = loads(body)
    except json.JSONDecodeError as exc:
        raise invalid("body", f"request body is not valid JSON: {reason(exc)}") from None
    if isinstance(document, dict) and isinstance(document.get("requests"), list):
        check_count(len(document["requests"]), max_requests)
    try:
        batch = BatchCreate.model_validate(document)
    except ValidationError as exc:
        raise from_validation(exc, document) from None
    check_unique(batch.requests)
    return batch


class NdjsonRequests(Sequence[BatchItem]):
    """The requests of an NDJSON body, validated once (the first bad line names itself), then
    parsed again from the body each time one is read: the API holds their offsets, not them."""

    def __init__(self, body: IO[bytes], offsets: array[int], parts: array[int]) -> None:
        self._body, self._offsets, self._parts = body, offsets, parts
        self._lock = threading.Lock()  # one reader at a time: they share the file position

    @classmethod
    def read(cls, body: IO[bytes], max_requests: int) -> NdjsonRequests:
        offsets, parts = array("q"), array("l")
        lines_by_id: dict[str, int] = {}
        for number, (offset, part, raw) in enumerate(_lines(body), start=1):
            if not raw.strip():
                continue
            check_count(len(offsets) + 1, max_requests)
            item = parse_line(number, raw)
            if item.custom_id in lines_by_id:
                first = lines_by_id[item.custom_id]
                message = (
                    f"line {number}: custom_id {item.custom_id!r} is already used on line {first}"
                )
                raise invalid(f"line {number}.custom_id", message)
            lines_by_id[item.custom_id] = number
            offsets.append(offset)
            parts.append(part)
        if not offsets:
            raise invalid("requests", "the batch has no requests")
        return cls(body, offsets, parts)

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> BatchItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[BatchItem]: ...

    def __getitem__(self, index: int | slice) -> BatchItem | list[BatchItem]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        with self._lock:
            self._body.seek(self._offsets[index])
            raw = self._body.readline().splitlines()[self._parts[index]]
        return _parsed(raw)

    def __iter__(self) -> Iterator[BatchItem]:
        for n in range(len(self)):
            yield self[n]


def _lines(body: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """(offset of its physical line, index within it, line) for every line, split as
    `bytes.splitlines` splits (a lone CR ends a line too)."""
    body.seek(0)
    offset = 0
    for physical in body:
        for part, line in enumerate(physical.splitlines() or [b""]):
            yield offset, part, line
        offset += len(physical)


def _parsed(raw: bytes) -> BatchItem:
    """A line that was validated before: pydantic's own JSON parser where it accepts it."""
    try:
        return BatchItem.model_validate_json(raw)
    except ValueError:  # e.g. a UTF-8 BOM, which `loads` allows
        return BatchItem.model_validate(loads(raw))


def parse_line(number: int, raw: bytes) -> BatchItem:
    try:  # the fast path; only a refused line goes the slow way, for the exact same message
        return BatchItem.model_validate_json(raw)
    except ValueError:
        pass
    try:
        document = loads(raw)
    except json.JSONDecodeError as exc:
        message = f"line {number} is not valid JSON: {reason(exc)}"
        raise invalid(f"line {number}", message) from None
    try:
        return BatchItem.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "line"
        custom_id = document.get("custom_id") if isinstance(document, dict) else None
        label = f"line {number}" + (f" (custom_id {custom_id!r})" if custom_id else "")
        message = f"{label}: {where}: {error['msg'].removeprefix('Value error, ')}"
        raise invalid(f"line {number}.{where}", message) from None


def from_validation(exc: ValidationError, document: Any) -> ApiError:
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"]]
    message = f"{'.'.join(loc) or 'body'}: {error['msg'].removeprefix('Value error, ')}"
    if len(loc) >= 2 and loc[0] == "requests" and loc[1].isdigit():
        custom_id = _custom_id(document, int(loc[1]))
        if custom_id:
            message = f"requests.{loc[1]} (custom_id {custom_id!r}): {message}"
    return invalid(".".join(loc) or "body", message)


def _custom_id(document: Any, index: int) -> str | None:
    try:
        value = document["requests"][index]["custom_id"]
    except (KeyError, IndexError, TypeError):
        return None
    return str(value)[:64]


def check_count(count: int, max_requests: int) -> None:
    if count > max_requests:
        raise invalid("requests", f"a batch holds at most {max_requests} requests")


def check_unique(items: list[BatchItem]) -> None:
    index_by_id: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.custom_id in index_by_id:
            first = index_by_id[item.custom_id]
            message = f"requests.{index}: custom_id {item.custom_id!r} is already used by {first}"
            raise invalid(f"requests.{index}.custom_id", message)
        index_by_id[item.custom_id] = index


def invalid(field: str, message: str) -> ApiError:
    short = message if len(message) <= 300 else message[:300] + "…"
    return ApiError(422, "invalid_request", short, fields=[FieldError(field=field, message=short)])
