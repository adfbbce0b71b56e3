"""AnswerPublisher: what a worker tells the followers of the job it runs (JobStreams): the job's
status changes, and its answer piece by piece as the provider streams it.

Batch jobs run unstreamed, with one `complete()` call: nobody follows them live, and a write per
piece would cost a batch its throughput. Without a channel (the AWS layout) every job does."""

from __future__ import annotations

from contextlib import aclosing

from shared.errors import TransientLLMError
from shared.job_stream import StreamEvent
from shared.models import ChatRequest, Completion, Job
from shared.ports import JobStreams, LLMProvider


class AnswerPublisher:
    def __init__(self, streams: JobStreams | None) -> None:
        self.streams = streams

    def _followed(self, job: Job) -> JobStreams | None:
        return self.streams if job.batch_id is None else None

    async def status(self, job: Job) -> None:
        """The job's status as it now is (after the write that changed it)."""
        if streams := self._followed(job):
            await streams.publish(job.id, StreamEvent.changed(job.status, job.attempts))

    async def answer(self, llm: LLMProvider, job: Job, request: ChatRequest) -> Completion:
        """The provider's answer; streamed, and each piece published, when the job is followed.
        The Completion's content is the text of the pieces its provider wrote."""
        streams = self._followed(job)
        if streams is None:
            return await llm.complete(request)
        written: dict[str, int] = {}  # pieces so far, by provider (a fallback starts again)
        async with aclosing(llm.stream(request)) as deltas:
            async for delta in deltas:
                if delta.completion is not None:
                    return delta.completion
                index = written[delta.provider] = written.get(delta.provider, -1) + 1
                piece = StreamEvent.piece(job.attempts, delta.provider, index, delta.text)
                await streams.publish(job.id, piece)
        raise TransientLLMError("the stream ended without its answer", provider=llm.name)
