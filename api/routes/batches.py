"""/v1/batches: submit many prompts as one batch, follow it, stream its results, cancel it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.batch_body import parse_batch
from api.deps import BatchesDep, RateLimited, SettingsDep, TenantDep
from api.errors import documented
from api.jsonbody import StrictJsonRoute
from shared.models import BatchCreate, BatchPublic

router = APIRouter(prefix="/v1/batches", tags=["batches"], route_class=StrictJsonRoute)

WebhookUrl = Annotated[
    str | None,
    Query(max_length=2048, description="For NDJSON bodies: where `batch.completed` is sent."),
]
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": BatchCreate.model_json_schema()},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one batch request (JSON) a line"}
            },
        },
    }
}


@router.post(
    "",
    response_model=BatchPublic,
    status_code=202,
    dependencies=[RateLimited],
    openapi_extra=BATCH_BODY,
    responses=documented(401, 413, 415, 422, 429, 503),
)
async def create_batch(
    request: Request,
    response: Response,
    batches: BatchesDep,
    tenant: TenantDep,
    settings: SettingsDep,
    webhook_url: WebhookUrl = None,
) -> BatchPublic:
    """Submit a batch (JSON `{"requests": [...]}` or NDJSON, one request a line)."""
    body = await request.body()
    parsed = await asyncio.to_thread(  # up to BATCH_MAX_BYTES of JSON: not on the event loop
        parse_batch,
        body,
        request.headers.get("content-type"),
        max_requests=settings.batch_max_requests,
        webhook_url=webhook_url,
    )
    batch = await batches.create(
        tenant, parsed.requests, webhook_url=parsed.webhook_url, metadata=parsed.metadata
    )
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return batch.public()


@router.get("/{batch_id}", response_model=BatchPublic, responses=documented(401, 404))
async def read_batch(batch_id: str, batches: BatchesDep, tenant: TenantDep) -> BatchPublic:
    """Get a batch with its exact counts."""
    return (await batches.get(tenant, batch_id)).public()


@router.get(
    "/{batch_id}/results",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "one line per request"},
        **documented(401, 404),
    },
)
async def read_batch_results(
    batch_id: str, batches: BatchesDep, tenant: TenantDep
) -> StreamingResponse:
    """Stream the results as NDJSON: `{"custom_id", "job_id", "status", "result"|"error"}`."""
    await batches.get(tenant, batch_id)  # 404 before the stream starts

    async def lines() -> AsyncIterator[bytes]:
        async for line in batches.results(tenant, batch_id):
            yield json.dumps(line, ensure_ascii=False).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/{batch_id}/cancel", response_model=BatchPublic, responses=documented(401, 404))
async def cancel_batch(batch_id: str, batches: BatchesDep, tenant: TenantDep) -> BatchPublic:
    """Cancel the batch's queued jobs; running ones finish."""
    return (await batches.cancel(tenant, batch_id)).public()
