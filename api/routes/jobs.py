"""/v1/jobs: submit, read (with long-poll), list, cancel and delete chat jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from api.deps import CallerDep, ChatDep, LogIds, RateLimitedTenant, TenantDep
from api.errors import HEADERS, ApiError, FieldError, documented
from api.jsonbody import StrictJsonRoute
from shared.errors import InvalidCursor
from shared.logs import bind
from shared.models import JOB_ID_EXAMPLE, JobCreate, JobPage, JobPublic, JobStatus
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
        examples=["order-1042-summary"],
    ),
]
JobId = Annotated[str, Path(description="The job's id.", examples=[JOB_ID_EXAMPLE])]
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_S,
        description=f"Seconds (0 to {MAX_WAIT_S:g}) to hold the answer until the job is "
        "finished; 0 answers at once.",
        examples=[10],
    ),
]
StatusFilter = Annotated[
    JobStatus | None, Query(description="Only jobs in this status.", examples=["failed"])
]
Limit = Annotated[int, Query(ge=1, le=100, description="Jobs on a page, 1 to 100.", examples=[20])]
# Cursors are base64url (padded) JSON; their content is the store's business. The pattern and
# length are checked here; a cursor of the right shape that this listing did not make is 422.
CURSOR_PATTERN = "^[A-Za-z0-9_-]+={0,2}$"
Cursor = Annotated[
    str | None,
    Query(
        max_length=1024,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the page before, exactly as it came (opaque). Anything "
        "that is not a cursor this listing returned answers 422 naming `cursor`.",
        examples=["WyIyMDI2LTAxLTA1VDEwOjE1OjAwLjEyMzQ1NiswMDowMCIsICJqb2JfNWYwYyJd"],
    ),
]
BatchId = Annotated[
    str | None,
    Query(
        max_length=128,
        description="Only the jobs of this batch (an unknown id lists nothing).",
        examples=["batch_9a1b3c5d7e9f4a2b8c6d0e1f3a5b7c9d"],
    ),
]

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
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Submit a chat job: answered at once from the cache (200) or queued (202)."""
    job = await chat.submit(tenant, body, idempotency_key, caller=caller)
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
    status: StatusFilter = None,
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
async def get_job(job_id: JobId, chat: ChatDep, tenant: TenantDep, wait: Wait = 0) -> JobPublic:
    """Get a job; with `wait`, hold until it is finished or `wait` seconds pass."""
    job = await chat.get(tenant, job_id, wait_s=wait)
    return job.public()


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    dependencies=[LogIds],
    responses=documented(401, 404, 409, 422),
)
async def cancel_job(job_id: JobId, chat: ChatDep, tenant: TenantDep) -> JobPublic:
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
async def delete_job(job_id: JobId, chat: ChatDep, tenant: TenantDep) -> Response:
    """Erase a finished job and its result (and its cached answer); a queued job must be
    cancelled first and a running one must end (409). Usage counters keep counting it."""
    await chat.delete(tenant, job_id)
    return Response(status_code=204)
