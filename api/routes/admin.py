"""/v1/admin: the operator's view of every tenant (what the console at /console shows and does),
open to ADMIN_API_KEYS only (api/admin_auth.py): a tenant's key answers 403."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BeforeValidator

from api.admin_auth import require_admin
from api.errors import ApiError, FieldError, documented
from api.jsonbody import StrictJsonRoute
from api.routes.batches import RESULTS
from api.routes.jobs import CURSOR_PATTERN, JobId, StatusFilter, invalid_cursor
from api.routes.usage import From, GroupByParam, To
from shared.admin import (
    AdminBatch,
    AdminBatchPage,
    AdminJob,
    AdminJobDetail,
    AdminJobPage,
    AdminService,
    AdminUsage,
    FailingWebhooks,
    admin_batch,
    admin_job,
    admin_job_detail,
    failing_webhook,
)
from shared.admin_queries import BatchQuery, JobQuery
from shared.dead_letters import DeadLetterReport, Redriven, UnknownQueue
from shared.errors import InvalidCursor, InvalidPeriod
from shared.models import BATCH_ID_EXAMPLE, BatchStatus, Job
from shared.overview import Overview
from shared.services import Services
from shared.usage_report import GroupBy

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    route_class=StrictJsonRoute,
    dependencies=[Depends(require_admin)],
)


async def get_admin(request: Request) -> AdminService:
    services: Services = request.app.state.services
    return services.admin


AdminDep = Annotated[AdminService, Depends(get_admin)]
Tenant = Annotated[
    str | None,
    Query(max_length=128, description="Only this tenant's.", examples=["acme"]),
]
BatchFilter = Annotated[
    str | None,
    Query(
        max_length=128,
        description="Only the jobs of this batch (an unknown id lists nothing).",
        examples=[BATCH_ID_EXAMPLE],
    ),
]


def _iso_instant(value: Any) -> Any:
    """Only ISO 8601 date-times (`2026-01-05T10:00:00Z`): not the Unix numbers a lax datetime
    also takes."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\S+", value):
        raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2026-01-05T10:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_instant)]
CreatedFrom = Annotated[
    Instant | None,
    Query(
        description="Only jobs created at or after this instant (ISO 8601 with a time zone).",
        examples=["2026-01-05T00:00:00Z"],
    ),
]
CreatedTo = Annotated[
    Instant | None,
    Query(
        description="Only jobs created before this instant (ISO 8601 with a time zone).",
        examples=["2026-01-06T00:00:00Z"],
    ),
]
Limit = Annotated[
    int, Query(ge=1, le=200, description="Records on a page, 1 to 200.", examples=[50])
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=1024,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the page before, exactly as it came (opaque); "
        "anything else answers 422 naming `cursor`.",
        examples=["WyJhMSIsIjIwMjYtMDEtMDVUMTA6MTU6MDAuMTIzNDU2KzAwOjAwI2pvYl94Il0="],
    ),
]
BatchStatusFilter = Annotated[
    BatchStatus | None, Query(description="Only batches in this status.", examples=["in_progress"])
]
BatchId = Annotated[str, Path(description="The batch's id.", examples=[BATCH_ID_EXAMPLE])]
SubjectId = Annotated[
    str, Path(description="The job's or batch's id.", examples=[BATCH_ID_EXAMPLE])
]
Tenants = Annotated[
    str | None,
    Query(
        max_length=128,
        description="Only this tenant; default: every known tenant.",
        examples=["acme"],
    ),
]
QueueRole = Annotated[
    str,
    Path(
        max_length=64,
        description="The source queue's role, as `GET /v1/admin/dead-letters` lists it "
        "(`jobs`, `batch`, `high`, `low`); another answers 404 naming `queue`.",
        examples=["jobs"],
    ),
]
READ = documented(401, 403, 422)
ONE = documented(401, 403, 404, 422)


@router.get("/jobs", response_model=AdminJobPage, responses=READ)
async def list_admin_jobs(
    admin: AdminDep,
    tenant: Tenant = None,
    status: StatusFilter = None,
    batch_id: BatchFilter = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminJobPage:
    """Every tenant's jobs, newest first, filtered, a page at a time (indexed reads only)."""
    query = JobQuery(tenant, status, batch_id, created_from, created_to)
    try:
        jobs, next_cursor = await admin.jobs(query, limit=limit, cursor=cursor)
    except InvalidCursor:
        raise invalid_cursor() from None
    return AdminJobPage(data=[admin_job(j) for j in jobs], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=AdminJobDetail, responses=ONE)
async def get_admin_job(job_id: JobId, admin: AdminDep) -> AdminJobDetail:
    """Any tenant's job in full: its request, result, error and webhook attempts."""
    return admin_job_detail(await admin.job(job_id))


@router.post(
    "/jobs/{job_id}/cancel", response_model=AdminJob, responses=documented(401, 403, 404, 409, 422)
)
async def cancel_admin_job(job_id: JobId, admin: AdminDep) -> AdminJob:
    """Cancel a queued job of any tenant; a running or finished one answers 409."""
    return admin_job(await admin.cancel_job(job_id))


@router.post(
    "/jobs/{job_id}/retry",
    response_model=AdminJob,
    responses=documented(401, 403, 404, 409, 422, 503),
)
async def retry_admin_job(job_id: JobId, admin: AdminDep) -> AdminJob:
    """Run a failed job again from the start (a batch's job reopens its batch); another status
    answers 409."""
    return admin_job(await admin.retry_job(job_id))


@router.get("/batches", response_model=AdminBatchPage, responses=READ)
async def list_admin_batches(
    admin: AdminDep,
    tenant: Tenant = None,
    status: BatchStatusFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> AdminBatchPage:
    """Every tenant's batches, newest first, a page at a time."""
    try:
        batches, next_cursor = await admin.batches_page(
            BatchQuery(tenant, status), limit=limit, cursor=cursor
        )
    except InvalidCursor:
        raise invalid_cursor() from None
    return AdminBatchPage(data=[admin_batch(b) for b in batches], next_cursor=next_cursor)


@router.get("/batches/{batch_id}", response_model=AdminBatch, responses=ONE)
async def get_admin_batch(batch_id: BatchId, admin: AdminDep) -> AdminBatch:
    """Any tenant's batch with its exact counts."""
    return admin_batch(await admin.batch(batch_id))


@router.get(
    "/batches/{batch_id}/results",
    response_class=StreamingResponse,
    responses={**RESULTS, **ONE},
)
async def get_admin_batch_results(batch_id: BatchId, admin: AdminDep) -> StreamingResponse:
    """Any tenant's batch results as NDJSON, one line per request in submission order."""
    batch = await admin.batch(batch_id)

    async def lines() -> AsyncIterator[bytes]:
        async for line in admin.batches.results(batch.tenant, batch_id):
            yield json.dumps(line, ensure_ascii=False).encode() + b"\n"

    headers = {"Content-Disposition": f'attachment; filename="{batch_id}.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=AdminBatch,
    responses=documented(401, 403, 404, 409, 422),
)
async def cancel_admin_batch(batch_id: BatchId, admin: AdminDep) -> AdminBatch:
    """Cancel any tenant's batch: its queued jobs are cancelled, running ones finish."""
    return admin_batch(await admin.cancel_batch(batch_id))


@router.get("/overview", response_model=Overview, responses=documented(401, 403))
async def get_admin_overview(admin: AdminDep) -> Overview:
    """Backlog by queue, the last hour's throughput, latency, errors and cache hits, provider
    health and the workers' heartbeats."""
    return await admin.overview()


@router.get("/webhooks/failing", response_model=FailingWebhooks, responses=READ)
async def list_failing_webhooks(
    admin: AdminDep,
    limit: Annotated[
        int, Query(ge=1, le=500, description="At most this many.", examples=[100])
    ] = 100,
) -> FailingWebhooks:
    """Webhooks that gave up, or wait to retry after a failed attempt, with their last error."""
    return FailingWebhooks(data=[failing_webhook(s) for s in await admin.failing_webhooks(limit)])


@router.post(
    "/webhooks/{subject_id}/redeliver",
    response_model=AdminJob | AdminBatch,
    responses=documented(401, 403, 404, 409, 422),
)
async def redeliver_webhook(subject_id: SubjectId, admin: AdminDep) -> AdminJob | AdminBatch:
    """Send a finished job's or batch's webhook event again now (same `webhook-id`); one that
    has not ended, or has no `webhook_url`, answers 409."""
    subject = await admin.redeliver_webhook(subject_id)
    return admin_job(subject) if isinstance(subject, Job) else admin_batch(subject)


@router.get("/usage", response_model=AdminUsage, responses=READ)
async def get_admin_usage(
    admin: AdminDep,
    start: From = None,
    end: To = None,
    group_by: GroupByParam = GroupBy.day,
    tenant: Tenants = None,
) -> AdminUsage:
    """Usage per tenant and in total, by day, model or provider, from the usage counters."""
    try:
        return await admin.usage(start, end, group_by, tenant)
    except InvalidPeriod as exc:
        fields = [FieldError(field=name, message=str(exc)) for name in exc.fields]
        raise ApiError(422, "invalid_request", str(exc), fields=fields) from None


@router.get("/dead-letters", response_model=DeadLetterReport, responses=documented(401, 403, 503))
async def list_dead_letters(admin: AdminDep) -> DeadLetterReport:
    """Each job queue's dead-letter queue and its depth (AWS); in the embedded and Redis/arq
    layouts, none (`has_dead_letter_queues` false): failed jobs are listed under jobs."""
    return await admin.dead_letters.report()


@router.post(
    "/dead-letters/{queue}/redrive",
    response_model=Redriven,
    responses=documented(401, 403, 404, 422, 503),
)
async def redrive_dead_letters(queue: QueueRole, admin: AdminDep) -> Redriven:
    """Move a queue's dead letters back to it, a bounded number a call (`remaining` says what
    is left). A job's message whose job has ended meanwhile is acknowledged by the worker, not
    run again."""
    try:
        return await admin.dead_letters.redrive(queue)
    except UnknownQueue as exc:
        field = FieldError(field="queue", message=str(exc))
        raise ApiError(404, "not_found", str(exc), fields=[field]) from None
