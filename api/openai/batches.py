"""/openai/v1/batches: OpenAI's Batch API over the native batch machinery.

Creating one reads its input file a line at a time (api/openai/batch_input.py). A file with a bad
line makes a `failed` batch listing what was wrong, line by line, as OpenAI does; a good one runs
as a native batch with the same id (fair turns, exact counts, cancel, webhooks: GET
/v1/batches/{id} shows it too). Its output and error files are made when first read
(api/openai/batch_files.py).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.batch_body import SPOOL_MEMORY_BYTES
from api.deps import (
    BatchesDep,
    CallerDep,
    ChatDep,
    FilesDep,
    RateLimitedTenant,
    SettingsDep,
    TenantDep,
)
from api.jsonbody import StrictJsonRoute
from api.openai.batch_files import batch_records
from api.openai.batch_input import BatchInput, read_input
from api.openai.errors import OpenAIError, OpenAIErrorResponse
from api.openai.objects import BatchCreateBody, BatchList, BatchRecord, OpenAIBatch, batch_object
from shared.batches import BatchService
from shared.errors import NotFound
from shared.files import FileService, created_ms, new_hex
from shared.keys import Caller
from shared.models import Batch, BatchStatus

router = APIRouter(route_class=StrictJsonRoute)

BatchId = Annotated[
    str,
    Path(
        max_length=128,
        description="The batch's id (`batch_…`).",
        examples=["batch_0198a3c4d5e6f70812345678901234ab"],
    ),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorResponse, "description": text}
    for code, text in {
        400: "Malformed body, or an input file that is not `purpose=batch`",
        401: "No valid API key",
        404: "No such batch (or input file) for this key",
        409: "The batch cannot be cancelled: it has ended or failed validation",
        429: "Over the rate limit; retry after Retry-After",
        503: "The queue cannot take the batch now, or file storage is not configured",
    }.items()
}


@router.post("/batches", response_model=OpenAIBatch, responses=ERRORS)
async def create_openai_batch(
    body: BatchCreateBody,
    files: FilesDep,
    batches: BatchesDep,
    chat: ChatDep,
    tenant: RateLimitedTenant,
    caller: CallerDep,
    settings: SettingsDep,
) -> OpenAIBatch:
    """Create a batch from an uploaded file: `failed` with `errors` when a line is bad."""
    source = await files.find(tenant, body.input_file_id)
    if source is None:
        message = f"no file {body.input_file_id[:64]!r} for this key"
        raise OpenAIError(404, "file_not_found", message, param="input_file_id")
    if source.purpose != "batch":
        message = f"file {source.id} is a {source.purpose} file, not a batch input"
        raise OpenAIError(400, "invalid_input_file", message, param="input_file_id")
    hex_id = new_hex()
    record = BatchRecord(
        id=f"batch_{hex_id}",
        input_file_id=source.id,
        endpoint=body.endpoint,
        completion_window=body.completion_window,
        created_at=created_ms(hex_id) // 1000,
        metadata=body.metadata,
    )
    parsed = await _read(files, tenant, source.id, chat.models, settings.batch_max_requests)
    try:
        record.errors = parsed.errors
        await batch_records(files).put(tenant, record.id, record)
        if record.errors:
            return batch_object(record, None)
        native = await _run(batches, files, caller, record, parsed, body)
    finally:
        parsed.close()
    return batch_object(record, native)


async def _read(
    files: FileService, tenant: str, file_id: str, models: Any, max_requests: int
) -> BatchInput:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as raw:
        async for chunk in await files.content(tenant, file_id):
            raw.write(chunk)
        limit = min(max_requests, 50_000)
        return await asyncio.to_thread(read_input, raw, models, limit)


async def _run(
    batches: BatchService,
    files: FileService,
    caller: Caller,
    record: BatchRecord,
    parsed: BatchInput,
    body: BatchCreateBody,
) -> Batch:
    """The native batch; should it be refused (backlog, queue), the record goes too."""
    try:
        return await batches.create(
            caller.tenant,
            parsed.requests(),
            caller=caller,
            webhook_url=body.webhook_url,
            metadata=body.metadata,
            batch_id=record.id,
        )
    except BaseException:
        await batch_records(files).delete(caller.tenant, record.id)
        raise


async def _record(files: FileService, tenant: str, batch_id: str) -> BatchRecord:
    record = await batch_records(files).get(tenant, batch_id, BatchRecord)
    if record is None:
        raise NotFound(batch_id)
    return record


async def _native(batches: BatchService, tenant: str, record: BatchRecord) -> Batch | None:
    """The native batch (None while it is being made, or when validation failed)."""
    if record.errors:
        return None
    try:
        return await batches.get(tenant, record.id)
    except NotFound:
        return None


@router.get("/batches/{batch_id}", response_model=OpenAIBatch, responses=ERRORS)
async def retrieve_openai_batch(
    batch_id: BatchId, files: FilesDep, batches: BatchesDep, tenant: TenantDep
) -> OpenAIBatch:
    """A batch with its status and exact request counts."""
    record = await _record(files, tenant, batch_id)
    return batch_object(record, await _native(batches, tenant, record))


@router.get("/batches", response_model=BatchList, responses=ERRORS)
async def list_openai_batches(
    files: FilesDep,
    batches: BatchesDep,
    tenant: TenantDep,
    after: Annotated[
        str | None,
        Query(
            max_length=128,
            description="The page after this batch (the last id of the page before).",
            examples=["batch_0198a3c4d5e6f70812345678901234ab"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Batches per page.", examples=[20])] = 20,
) -> BatchList:
    """The caller's OpenAI batches, newest first, a page at a time."""
    records = await batch_records(files).page(tenant, BatchRecord, after=after, limit=limit + 1)
    shown = records[:limit]
    natives = await asyncio.gather(*(_native(batches, tenant, r) for r in shown))
    data = [batch_object(r, n) for r, n in zip(shown, natives, strict=True)]
    return BatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(records) > limit,
    )


@router.post("/batches/{batch_id}/cancel", response_model=OpenAIBatch, responses=ERRORS)
async def cancel_openai_batch(
    batch_id: BatchId, files: FilesDep, batches: BatchesDep, tenant: TenantDep
) -> OpenAIBatch:
    """Cancel the batch's queued requests; running ones finish."""
    record = await _record(files, tenant, batch_id)
    if record.errors:
        message = f"batch {batch_id} failed validation: there is nothing to cancel"
        raise OpenAIError(409, "batch_failed", message)
    native = await batches.cancel(tenant, batch_id)
    if record.cancelling_at is None and native.status in (
        BatchStatus.cancelling,
        BatchStatus.cancelled,
    ):
        record.cancelling_at = int(time.time())
        await batch_records(files).put(tenant, record.id, record)
    return batch_object(record, native)
