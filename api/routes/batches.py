"""/v1/batches: submit many prompts as one batch, follow it, stream its results, cancel it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.batch_body import parse_batch, spool
from api.deps import BatchesDep, CallerDep, LogIds, RateLimitedTenant, SettingsDep, TenantDep
from api.errors import documented
from api.jsonbody import StrictJsonRoute
from api.routes.jobs import Cursor, IdempotencyKey, Limit, invalid_cursor
from shared.errors import InvalidCursor
from shared.keys import Priority
from shared.logs import bind
from shared.models import BATCH_ID_EXAMPLE, WEBHOOK_URL_DESCRIPTION, BatchPage, BatchPublic, HttpUrl

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=StrictJsonRoute)

WebhookUrl = Annotated[
    HttpUrl | None,
    Query(
        description="For NDJSON bodies (a JSON body has its own `webhook_url`): where "
        f"`batch.completed` is sent. {WEBHOOK_URL_DESCRIPTION}",
        examples=["https://hooks.example.com/chatjobs"],
    ),
]
PriorityParam = Annotated[
    Priority | None,
    Query(
        description="For NDJSON bodies (a JSON body has its own `priority`): `high`, `normal` "
        "or `low` for every job; null: the API key's default.",
        examples=["low"],
    ),
]
BatchId = Annotated[str, Path(description="The batch's id.", examples=[BATCH_ID_EXAMPLE])]
# The body is parsed by hand (JSON or NDJSON), so FastAPI cannot describe it: `BatchCreate` is
# added to the document's components by api/openapi.py, and referenced from here.
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BatchCreate"}},
            "application/x-ndjson": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/BatchItem"},
                    "minItems": 1,
                    "description": "NDJSON: each item is sent as one line of JSON (blank lines "
                    "are skipped); at least one, at most BATCH_MAX_REQUESTS.",
                },
                "example": [
                    {"custom_id": "a", "messages": [{"role": "user", "content": "Hi"}]},
                    {"custom_id": "b", "messages": [{"role": "user", "content": "Bye"}]},
                ],
            },
        },
    }
}
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Accepted: follow it at `Location`",
        "headers": {
            "Location": {"description": "`/v1/batches/{id}`", "schema": {"type": "string"}}
        },
    }
}
RESULTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One line per request, in submission order: "
        '`{"custom_id", "job_id", "status", "result"|"error"}`',
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "",
    response_model=BatchPublic,
    status_code=202,
    openapi_extra=BATCH_BODY,
    responses={**ACCEPTED, **documented(401, 409, 413, 415, 422, 429, 503)},
)
async def create_batch(
    request: Request,
    response: Response,
    batches: BatchesDep,
    tenant: RateLimitedTenant,
    caller: CallerDep,
    settings: SettingsDep,
    webhook_url: WebhookUrl = None,
    priority: PriorityParam = None,
    idempotency_key: IdempotencyKey = None,
) -> BatchPublic:
    """Submit a batch (JSON `{"requests": [...]}` or NDJSON, one request a line)."""
    body, digest = await spool(request.stream())
    try:
        content_type = request.headers.get("content-type")
        parsed = await asyncio.to_thread(  # up to BATCH_MAX_BYTES: not on the event loop
            parse_batch,
            body,
            content_type,
            max_requests=settings.batch_max_requests,
            webhook_url=webhook_url,
            priority=priority,
        )
        batch = await batches.create(
            tenant,
            parsed.requests,
            webhook_url=parsed.webhook_url,
            metadata=parsed.metadata,
            idempotency_key=idempotency_key,
            caller=caller,
            priority=parsed.priority,
            request_hash=_request_hash(digest, content_type, webhook_url, priority)
            if idempotency_key
            else None,
        )
    finally:
        body.close()
    bind(batch_id=batch.id)
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return batch.public()


def _request_hash(
    digest: Any, content_type: str | None, webhook_url: str | None, priority: str | None
) -> str:
    """What an Idempotency-Key replay must repeat exactly: the body as sent and its framing."""
    framing = f"\n{content_type or ''}\n{webhook_url or ''}"
    digest.update((framing + (f"\n{priority}" if priority else "")).encode())
    return str(digest.hexdigest())


@router.get("", response_model=BatchPage, responses=documented(401, 422))
async def list_batches(
    batches: BatchesDep, tenant: TenantDep, limit: Limit = 20, cursor: Cursor = None
) -> BatchPage:
    """List the caller's batches, newest first, a page at a time."""
    try:
        found, next_cursor = await batches.list(tenant, limit=limit, cursor=cursor)
    except InvalidCursor:
        raise invalid_cursor() from None
    return BatchPage(data=[batch.public() for batch in found], next_cursor=next_cursor)


@router.get(
    "/{batch_id}",
    response_model=BatchPublic,
    dependencies=[LogIds],
    responses=documented(401, 404, 422),
)
async def get_batch(batch_id: BatchId, batches: BatchesDep, tenant: TenantDep) -> BatchPublic:
    """Get a batch with its exact counts."""
    return (await batches.get(tenant, batch_id)).public()


@router.get(
    "/{batch_id}/results",
    response_class=StreamingResponse,
    dependencies=[LogIds],
    responses={**RESULTS, **documented(401, 404, 422)},
)
async def get_batch_results(
    batch_id: BatchId, batches: BatchesDep, tenant: TenantDep
) -> StreamingResponse:
    """Stream the results as NDJSON: `{"custom_id", "job_id", "status", "result"|"error"}`."""
    await batches.get(tenant, batch_id)  # 404 before the stream starts

    async def lines() -> AsyncIterator[bytes]:
        async for line in batches.results(tenant, batch_id):
            yield json.dumps(line, ensure_ascii=False).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post(
    "/{batch_id}/cancel",
    response_model=BatchPublic,
    dependencies=[LogIds],
    responses=documented(401, 404, 422),
)
async def cancel_batch(batch_id: BatchId, batches: BatchesDep, tenant: TenantDep) -> BatchPublic:
    """Cancel the batch's queued jobs; running ones finish."""
    return (await batches.cancel(tenant, batch_id)).public()


@router.post(
    "/{batch_id}/retry-failed",
    response_model=BatchPublic,
    dependencies=[LogIds],
    responses=documented(401, 404, 409, 422, 503),
)
async def retry_failed_batch(
    batch_id: BatchId, batches: BatchesDep, tenant: TenantDep
) -> BatchPublic:
    """Run the batch's failed jobs again: each starts over (attempts from 0, error cleared);
    a completed batch reopens and sends `batch.completed` again when it next completes. With
    no failed job the batch is answered unchanged; a cancelled batch answers 409."""
    return (await batches.retry_failed(tenant, batch_id)).public()
