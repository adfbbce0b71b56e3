"""POST /openai/v1/chat/completions: OpenAI's Chat Completions, answered through a chat job.

The request becomes a job like any other (listed in /v1/jobs, counted in /v1/usage); the API
holds the answer until the job ends (CHAT_COMPLETIONS_WAIT_S), or streams it as server-sent
`chat.completion.chunk` events ending with `data: [DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from api.deps import CallerDep, ChatDep, RateLimitedTenant, SettingsDep
from api.jsonbody import StrictJsonRoute
from api.openai.errors import OpenAIError, documented, openai_error
from api.openai.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionCreate,
    ChunkChoice,
    ChunkDelta,
    completion_of,
    usage_of,
)
from shared.answer_stream import Interrupted, follow_answer
from shared.errors import UnknownModel
from shared.logs import bind
from shared.models import Job, JobStatus
from shared.service import ChatService

router = APIRouter(route_class=StrictJsonRoute)

JOB_HEADER = "x-chatjobs-job-id"
CACHED_HEADER = "x-chatjobs-cached"
ERRORS = documented(
    (400, "Malformed, or asks for something this service cannot honour (`param` names it)"),
    (401, "No valid API key"),
    (404, "`model` is not served here (`model_not_found`)"),
    (
        408,
        "The job did not end within CHAT_COMPLETIONS_WAIT_S (`wait_timeout`); it keeps "
        "running: read it at /v1/jobs/{id}",
    ),
    (429, "Over the rate limit; retry after Retry-After"),
    (503, "The LLM providers kept failing, or the queue could not take the job"),
)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "The answer (or its stream)"},
    },
)
async def create_chat_completion(
    body: ChatCompletionCreate,
    chat: ChatDep,
    tenant: RateLimitedTenant,
    caller: CallerDep,
    settings: SettingsDep,
) -> Response:
    """Create a chat completion (OpenAI's API), run as a chat job."""
    try:
        chat.models.check(body.model)
    except UnknownModel as exc:
        raise OpenAIError(404, "model_not_found", str(exc), param="model") from None
    job = await chat.submit(tenant, body.job(), caller=caller)
    bind(job_id=job.id)
    headers = {JOB_HEADER: job.id, CACHED_HEADER: str(job.cached).lower()}
    wait_s = settings.chat_completions_wait_s
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _sse(chat, tenant, job, wait_s, body.model, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    if not job.status.is_terminal:
        job = await chat.wait_finished(tenant, job.id, wait_s)
    if job.status is not JobStatus.succeeded:
        return _unanswered(job, headers)
    answer = completion_of(job, body.model)
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)


def _unanswered(job: Job, headers: dict[str, str]) -> Response:
    status, code, message = _failure(job)
    return openai_error(status, code, message, headers=headers)


def _failure(job: Job) -> tuple[int, str, str]:
    """Status, code and message for a job that has no answer (yet)."""
    if not job.status.is_terminal:
        return (
            408,
            "wait_timeout",
            (
                f"job {job.id} is still {job.status.value}; it keeps running: read its answer at "
                f"/v1/jobs/{job.id}, or send the request again"
            ),
        )
    if job.status is JobStatus.cancelled:
        return 409, "cancelled", f"job {job.id} was cancelled"
    error = job.error
    code = error.code if error else "llm_unavailable"
    message = f"job {job.id} failed: {error.message if error else 'no answer'}"
    return (400 if code == "llm_rejected" else 503), code, message


async def _sse(
    chat: ChatService, tenant: str, job: Job, wait_s: float, model: str, include_usage: bool
) -> AsyncIterator[str]:
    created = int(job.created_at.timestamp())

    def chunk(delta: ChunkDelta, finish: bool = False) -> str:
        choice = ChunkChoice(delta=delta, finish_reason="stop" if finish else None)
        event = ChatCompletionChunk(id=job.id, created=created, model=model, choices=[choice])
        return _event(event.model_dump_json())

    def error(message: str, code: str) -> str:
        error = {"message": message, "type": "server_error", "param": None, "code": code}
        return _event(json.dumps({"error": error}))

    yield chunk(ChunkDelta(role="assistant", content=""))
    async for piece in follow_answer(chat, tenant, job, wait_s):
        if isinstance(piece, str):
            yield chunk(ChunkDelta(content=piece))
            continue
        if isinstance(piece, Interrupted):  # the job goes on: its record will have the answer
            went_on = f"it goes on: read its answer at /v1/jobs/{job.id}"
            yield error(f"job {job.id}: {piece.reason}; {went_on}", "stream_interrupted")
            return
        if piece.status is not JobStatus.succeeded:
            _, code, message = _failure(piece)
            yield error(message, code)
            return
        yield chunk(ChunkDelta(), finish=True)
        if include_usage:
            usage = ChatCompletionChunk(
                id=job.id, created=created, model=model, choices=[], usage=usage_of(piece)
            )
            yield _event(usage.model_dump_json())
    yield _event("[DONE]")


def _event(data: str) -> str:
    return f"data: {data}\n\n"
