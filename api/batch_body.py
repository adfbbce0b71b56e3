"""Parse POST /v1/batches bodies (JSON or NDJSON) into a BatchCreate, naming the bad line."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from api.errors import ApiError, FieldError
from api.jsonbody import loads, reason
from shared.models import BatchCreate, BatchItem

NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/ndjson"}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def parse_batch(
    body: bytes, content_type: str | None, *, max_requests: int, webhook_url: str | None
) -> BatchCreate:
    media = media_type(content_type)
    if media in NDJSON_TYPES:
        items = parse_ndjson(body, max_requests)
        return BatchCreate(requests=items, webhook_url=webhook_url)
    if media == "application/json" or media.endswith("+json"):
        batch = parse_json(body, max_requests)
        if webhook_url and not batch.webhook_url:
            batch.webhook_url = webhook_url
        return batch
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


def parse_ndjson(body: bytes, max_requests: int) -> list[BatchItem]:
    items: list[BatchItem] = []
    lines_by_id: dict[str, int] = {}
    for number, raw in enumerate(body.splitlines(), start=1):
        if not raw.strip():
            continue
        check_count(len(items) + 1, max_requests)
        item = parse_line(number, raw)
        if item.custom_id in lines_by_id:
            first = lines_by_id[item.custom_id]
            message = f"line {number}: custom_id {item.custom_id!r} is already used on line {first}"
            raise invalid(f"line {number}.custom_id", message)
        lines_by_id[item.custom_id] = number
        items.append(item)
    if not items:
        raise invalid("requests", "the batch has no requests")
    return items


def parse_line(number: int, raw: bytes) -> BatchItem:
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
