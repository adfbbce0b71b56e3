"""What a worker publishes for a job's followers, and what a follower passes on: the no-mix
rule (shared/job_stream.py) as a table, then the executor and follow_answer over the in-process
JobStreams with fakes at the other ports."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from shared.adapters.streams.local import LocalJobStreams
from shared.answer_stream import Interrupted, follow_answer
from shared.errors import TransientLLMError
from shared.execution import JobExecutor
from shared.job_stream import AnswerRelay, Delta, Step, StreamEvent
from shared.models import ChatRequest, Job, JobCreate, JobStatus
from shared.retry import RetryPolicy
from shared.service import ChatService
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM

RUNNING, QUEUED = JobStatus.running, JobStatus.queued


def status(value: JobStatus, attempt: int = 1) -> StreamEvent:
    return StreamEvent.changed(value, attempt)


def piece(index: int, attempt: int = 1, provider: str = "gemini") -> StreamEvent:
    return StreamEvent.piece(attempt, provider, index, f"<{attempt}{provider[0]}{index}>")


@pytest.mark.parametrize(
    "events,steps",
    [
        ([status(RUNNING), piece(0), piece(1)], ["skip", "relay", "relay"]),
        ([piece(0), piece(0, provider="openrouter")], ["relay", "interrupted"]),  # fallback
        ([piece(0), status(QUEUED), piece(0, 2)], ["relay", "interrupted", "interrupted"]),
        ([piece(0), piece(0, attempt=2)], ["relay", "interrupted"]),  # a retry's text
        ([piece(0), piece(2)], ["relay", "interrupted"]),  # a piece went missing
        ([piece(1), piece(2)], ["skip", "skip"]),  # the start is gone: not this text
        ([piece(1), piece(0, attempt=2)], ["skip", "relay"]),  # ... but the next one
        ([status(QUEUED), status(RUNNING, 2), piece(0, 2)], ["skip", "skip", "relay"]),
        ([piece(0), status(JobStatus.succeeded)], ["relay", "skip"]),
    ],
)
def test_a_follower_relays_one_source_from_its_start(
    events: list[StreamEvent], steps: list[Step]
) -> None:
    relay = AnswerRelay()
    assert [relay.step(event) for event in events] == steps


def test_the_relayed_text_is_the_relayed_pieces() -> None:
    relay = AnswerRelay()
    for event in (piece(0), piece(1), piece(0, provider="openrouter")):
        relay.step(event)
    assert relay.text == "<1g0><1g1>"


class Piecewise(FakeLLM):
    """Streams its answer a character at a time; `break_after` pieces, then fails (once)."""

    def __init__(self, break_after: int | None = None) -> None:
        super().__init__("gemini")
        self.break_after = break_after

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        answer = await self.complete(request)
        for n, char in enumerate(answer.content):
            if n == self.break_after:
                self.break_after = None
                raise TransientLLMError("broke off", provider=self.name)
            yield Delta(char, self.name)
        yield Delta("", self.name, answer)


class Harness:
    def __init__(self, llm: FakeLLM) -> None:
        self.store, self.streams = FakeJobStore(), LocalJobStreams()
        self.chat = ChatService(self.store, None, FakeJobQueue(), streams=self.streams)
        retry = RetryPolicy(budget_s=900, base_s=0, max_delay_s=0, max_attempts=3)
        self.executor = JobExecutor(
            self.store, None, llm, job_timeout_s=5, retry=retry, cache_ttl_s=60,
            streams=self.streams,
        )  # fmt: skip

    async def submit(self, prompt: str = "abcdef", batch_id: str | None = None) -> Job:
        body = JobCreate.model_validate({"messages": [{"role": "user", "content": prompt}]})
        job = await self.chat.submit("t1", body)
        if batch_id:
            self.store.jobs[job.id] = job.model_copy(update={"batch_id": batch_id})
        return job

    async def events(self, job_id: str) -> list[StreamEvent]:
        return [event for _, event in await self.streams.read(job_id, "0", wait_s=0)]

    async def followed(self, job: Job) -> list[str | Job | Interrupted]:
        return [item async for item in follow_answer(self.chat, "t1", job, wait_s=1)]


async def test_a_run_publishes_its_status_changes_and_each_piece() -> None:
    h = Harness(Piecewise())
    job = await h.submit("abc")
    await h.executor.run(job.id)
    assert await h.events(job.id) == [
        status(RUNNING),
        *(StreamEvent.piece(1, "gemini", n, char) for n, char in enumerate("cba")),
        status(JobStatus.succeeded),
    ]
    result = h.store.jobs[job.id].result
    assert result is not None and result.content == "cba"


async def test_a_failure_midway_is_followed_by_queued_then_the_next_attempt() -> None:
    h = Harness(Piecewise(break_after=2))
    job = await h.submit("abcd")
    await h.executor.run(job.id)
    h.store.jobs[job.id] = h.store.jobs[job.id].model_copy(update={"not_before": None})
    await h.executor.run(job.id)
    kinds = [(e.kind, e.attempt, e.status or e.text) for e in await h.events(job.id)]
    assert kinds == [
        ("status", 1, RUNNING), ("delta", 1, "d"), ("delta", 1, "c"), ("status", 1, QUEUED),
        ("status", 2, RUNNING), *(("delta", 2, c) for c in "dcba"),
        ("status", 2, JobStatus.succeeded),
    ]  # fmt: skip


async def test_batch_jobs_run_unstreamed() -> None:
    h = Harness(Piecewise())
    job = await h.submit(batch_id="batch_1")
    await h.executor.run(job.id)
    assert await h.events(job.id) == []
    assert h.store.jobs[job.id].status is JobStatus.succeeded


async def test_a_follower_gets_the_pieces_then_the_job() -> None:
    h = Harness(Piecewise())
    job = await h.submit("abc")
    await h.executor.run(job.id)
    *pieces, last = await h.followed(job)
    assert pieces == ["c", "b", "a"]
    assert isinstance(last, Job) and last.status is JobStatus.succeeded


async def test_a_follower_sent_text_of_a_failed_attempt_is_told_so() -> None:
    h = Harness(Piecewise(break_after=2))
    job = await h.submit("abcd")
    await h.executor.run(job.id)  # the attempt breaks off; the job is queued again
    *pieces, last = await h.followed(job)
    assert pieces == ["d", "c"]
    assert isinstance(last, Interrupted) and last.job.status is JobStatus.queued
    assert "attempt 1 failed" in last.reason


async def test_a_stream_that_lost_its_start_gives_the_whole_answer_at_the_end() -> None:
    h = Harness(Piecewise())
    h.streams.max_events = 2  # the channel kept only the last events
    job = await h.submit("abcdef")
    await h.executor.run(job.id)
    assert await h.followed(job) == ["fedcba", h.store.jobs[job.id]]


async def test_pieces_lost_at_the_end_come_from_the_record() -> None:
    h = Harness(Piecewise())
    job = await h.submit("abcdef")
    await h.executor.run(job.id)
    kept = [e for e in await h.events(job.id) if e.kind == "status" or e.index < 2]
    h.streams = LocalJobStreams()  # as if the last pieces had not been published
    h.chat.streams = h.streams
    for event in kept:
        await h.streams.publish(job.id, event)
    assert await h.followed(job) == ["f", "e", "dcba", h.store.jobs[job.id]]


async def test_without_a_channel_the_answer_comes_whole() -> None:
    h = Harness(Piecewise())
    h.chat.streams = None
    job = await h.submit("abc")
    await h.executor.run(job.id)
    assert await h.followed(job) == ["cba", h.store.jobs[job.id]]
