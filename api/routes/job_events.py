"""GET /v1/jobs/{id}/events: a job followed as server-sent events, resumable with Last-Event-ID."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from api.deps import ChatDep, LogIds, SettingsDep, TenantDep
from api.errors import documented
from api.routes.jobs import JobId
from shared.answer_stream import END, START, follow_job
from shared.job_stream import StreamEvent
from shared.models import Job, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EVENT_ID_PATTERN = f"^([0-9]{{1,20}}(-[0-9]{{1,20}})?|{END})$"
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=41,
        pattern=EVENT_ID_PATTERN,
        description="The `id` of the last event received: the stream resumes just after it "
        "(an EventSource sends it by itself when it reconnects).",
        examples=["1767607800123-4"],
    ),
]


class StatusEvent(BaseModel):
    """`event: status`: the job's status changed (running, back to queued for a retry, ended)."""

    status: JobStatus = Field(description="The job's new status.", examples=["running"])
    attempt: int = Field(description="The attempt it concerns (1 for the first).", examples=[1])


class DeltaEvent(BaseModel):
    """`event: delta`: the next piece of the answer's text. A piece with `index` 0 starts the
    text anew (another attempt or provider took over): drop what came before it."""

    text: str = Field(description="The piece of text.", examples=["Hamlet, prince of "])
    index: int = Field(
        description="Its place in the text of its attempt and provider, from 0.", examples=[0], ge=0
    )
    attempt: int = Field(description="The attempt that wrote it.", examples=[1])
    provider: str = Field(description="The provider that wrote it.", examples=["gemini"])


STREAM_DESCRIPTION = (
    "Server-sent events, each with an `id`: `status` (StatusEvent) and `delta` (DeltaEvent) as "
    "the job runs, then one `job` event (JobPublic, id `end`) once it has ended. Batch jobs, "
    "and every job on the AWS layout, send only the `job` event. A connection lasts at most "
    "CHAT_COMPLETIONS_WAIT_S: reconnect with `Last-Event-ID` to go on with no gap or repeat."
)
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "id", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "delta", "job"]},
        "id": {"type": "string", "pattern": EVENT_ID_PATTERN},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [
                    {"$ref": f"#/components/schemas/{model}"}
                    for model in ("StatusEvent", "DeltaEvent", "JobPublic")
                ]
            },
        },
    },
}


def _json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The usual error answers, as JSON (the route's own type is the event stream)."""
    answers: dict[int | str, dict[str, Any]] = {}
    for code, answer in documented(*codes).items():
        schema = {"$ref": f"#/components/schemas/{answer.pop('model').__name__}"}
        answers[code] = answer | {"content": {"application/json": {"schema": schema}}}
    return answers


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": STREAM_DESCRIPTION,
        "content": {"text/event-stream": {"itemSchema": EVENT_SCHEMA}},
    },
    **_json_errors(401, 404, 422),
    500: _json_errors(500)[500] | {"description": "Unexpected (`internal_error`)"},
}


async def followed_job(job_id: JobId, chat: ChatDep, tenant: TenantDep) -> Job:
    """The caller's job, read before the stream starts (another tenant's is 404)."""
    return await chat.get(tenant, job_id)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    dependencies=[LogIds],
    responses=RESPONSES,
)
async def get_job_events(
    job: Annotated[Job, Depends(followed_job)],
    chat: ChatDep,
    tenant: TenantDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
) -> AsyncIterator[ServerSentEvent]:
    """Follow a job as server-sent events: status changes and the answer as it is written,
    then the job once it has ended."""
    after, max_s = last_event_id or START, settings.chat_completions_wait_s
    async for item in follow_job(chat, tenant, job.id, after, max_s):
        if isinstance(item, Job):
            yield ServerSentEvent(event="job", id=END, raw_data=item.public().model_dump_json())
        else:
            yield ServerSentEvent(event=item[1].kind, id=item[0], raw_data=_payload(item[1]))


def _payload(event: StreamEvent) -> str:
    if event.kind == "status":
        assert event.status is not None
        return StatusEvent(status=event.status, attempt=event.attempt).model_dump_json()
    return DeltaEvent(
        text=event.text, index=event.index, attempt=event.attempt, provider=event.provider
    ).model_dump_json()
