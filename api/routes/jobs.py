"""/v1/jobs: submit, read (with long-poll), list, cancel and delete chat jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from api.deps import ChatDep, LogIds, RateLimitedTenant, TenantDep
from api.errors import HEADERS, ApiError, FieldError, documented
from api.jsonbody import StrictJsonRoute
from shared.errors import InvalidCursor
from shared.logs import bind
from shared.models import JobCreate, JobPage, JobPublic, JobStatus
from shared.service import MAX_WAIT_S

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=StrictJsonRoute)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Same key and body within 24 h returns the same job (or batch); "
        "the same key with another body answers 409.",
    ),
]
Wait = Annotated[
    float,
    Query(ge=0, le=MAX_WAIT_S, description="Seconds to hold until the job is finished."),
]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=1024, description="`next_cursor` of a page.")]
BatchId = Annotated[str | None, Query(max_length=128)]

SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Queued: poll the `Location`, or wait for the webhook",
        "headers": {
            "Location": {"description": "`/v1/jobs/{id}`", "schema": {"type": "string"}},
            "Retry-After": HEADERS["Retry-After"] | {"description": "Seconds before polling."},
        },
    },
    200: {"model": JobPublic, "description": "Answered from the cache, or a finished replay"},
    **documented(401, 409, 413, 422, 429, 503),
}


@router.post("", response_model=JobPublic, status_code=202, responses=SUBMIT_RESPONSES)
async def create_job(
    body: JobCreate,
    response: Response,
    chat: ChatDep,
    tenant: RateLimitedTenant,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Submit a chat job: answered at once from the cache (200) or queued (202)."""
    job = await chat.submit(tenant, body, idempotency_key)
    bind(job_id=job.id)
    if job.status.is_terminal:
        response.status_code = 200
    else:
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        response.headers["Retry-After"] = "1"
    return job.public()


@router.get("", response_model=JobPage, responses=documented(401, 422))
async def list_jobs(
    chat: ChatDep,
    tenant: TenantDep,
    status: JobStatus | None = None,
    batch_id: BatchId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JobPage:
    """List the caller's jobs, newest first, a page at a time."""
    try:
        jobs, next_cursor = await chat.list(
            tenant, status=status, batch_id=batch_id, limit=limit, cursor=cursor
        )
    except InvalidCursor:
        raise invalid_cursor() from None
    return JobPage(data=[job.public() for job in jobs], next_cursor=next_cursor)


def invalid_cursor() -> ApiError:
    fields = [FieldError(field="cursor", message="not a cursor returned by this endpoint")]
    return ApiError(422, "invalid_request", "cursor: invalid cursor", fields=fields)


@router.get(
    "/{job_id}",
    response_model=JobPublic,
    dependencies=[LogIds],
    responses=documented(401, 404, 422),
)
async def get_job(job_id: str, chat: ChatDep, tenant: TenantDep, wait: Wait = 0) -> JobPublic:
    """Get a job; with `wait`, hold until it is finished or `wait` seconds pass."""
    job = await chat.get(tenant, job_id, wait_s=wait)
    return job.public()


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    dependencies=[LogIds],
    responses=documented(401, 404, 409, 422),
)
async def cancel_job(job_id: str, chat: ChatDep, tenant: TenantDep) -> JobPublic:
    """Cancel a queued job; a running or finished job answers 409."""
    job = await chat.cancel(tenant, job_id)
    return job.public()


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    dependencies=[LogIds],
    responses={
        204: {"description": "Erased: the job and its result (usage counters are kept)"},
        **documented(401, 404, 409, 422),
    },
)
async def delete_job(
    job_id: Annotated[
        str, Path(description="The job's id.", examples=["job_5f0c2e8a9b7d4c1e8f3a6b2d9c0e1f4a"])
    ],
    chat: ChatDep,
    tenant: TenantDep,
) -> Response:
    """Erase a finished job and its result (and its cached answer); a queued job must be
    cancelled first and a running one must end (409). Usage counters keep counting it."""
    await chat.delete(tenant, job_id)
    return Response(status_code=204)
