"""follow_answer: a job's answer text as it arrives, then the job as it ended.

The OpenAI dialect's streamed chat completions read this. Until workers publish deltas, the
whole answer arrives as one piece when the job ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from shared.models import Job, JobStatus
from shared.service import ChatService


async def follow_answer(
    chat: ChatService, tenant: str, job: Job, wait_s: float
) -> AsyncIterator[str | Job]:
    """Yields text pieces of the answer in order, then the job: terminal, or as it was when
    `wait_s` ran out. The pieces of a job that did not succeed are never yielded."""
    if not job.status.is_terminal:
        job = await chat.wait_finished(tenant, job.id, wait_s)
    if job.status is JobStatus.succeeded and job.result is not None:
        yield job.result.content
    yield job
