"""Following a job as it runs, from its stream (JobStreams) and its record.

`follow_answer` (the OpenAI dialect's streamed chat completions) yields the answer's text as the
worker publishes it, by the rule of shared/job_stream.py: one attempt's text, never a mix. A job
that a worker made follow an identical one in flight (shared/coalescing.py) relays its leader's
text as it is written, then ends with its own record.
`follow_job` (`GET /v1/jobs/{id}/events`) yields every event of the stream, resumable after any
of their ids. Both end with the job as its record says. Without a channel (the AWS layout), a
cache hit, or a job already finished, the whole answer comes at once with the job.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared.job_stream import AnswerRelay, StreamEvent
from shared.models import Job, JobStatus
from shared.ports import JobStreams
from shared.service import ChatService

RECHECK_S = 1.0  # with nothing new on the stream, the job's record is read this often
START = "0"  # the id before a stream's first event
END = "end"  # the id of the last event (the job as it ended): after it there is only that

Entry = tuple[str, StreamEvent]


@dataclass(frozen=True)
class Interrupted:
    """The text passed on so far can no longer become the answer: the attempt that wrote it
    failed, or its stream lost pieces. The job goes on; its record will have the answer."""

    job: Job
    reason: str


async def follow_answer(
    chat: ChatService, tenant: str, job: Job, wait_s: float
) -> AsyncIterator[str | Job | Interrupted]:
    """Yields text pieces of the answer in order, then the job: terminal, or as it was when
    `wait_s` passed with nothing new. Or, once text was yielded that cannot become the answer,
    `Interrupted` (and nothing after it). The text of a job that did not succeed may have been
    yielded in part; the job says how it ended."""
    if job.status.is_terminal or chat.streams is None:
        job = await chat.wait_finished(tenant, job.id, wait_s)
        if job.status is JobStatus.succeeded and job.result is not None:
            yield job.result.content
        yield job
        return
    relay = AnswerRelay()
    source: str | None = job.waiting_on or job.id  # a follower relays its leader's answer
    while source is not None:
        followed, source = source, None
        async for item in _follow(chat, chat.streams, tenant, followed, START, idle_s=wait_s):
            if isinstance(item, Job):  # the end of the followed job: then of this one
                job = (
                    item if item.id == job.id else await chat.wait_finished(tenant, job.id, wait_s)
                )
                break
            if followed == job.id and _joined(item[1], relay):
                source = (await chat.get(tenant, job.id)).waiting_on
                if source is not None:
                    break  # a worker made it follow an identical job: relay that one's text
            step = relay.step(item[1])
            if step == "interrupted":
                yield Interrupted(await chat.get(tenant, job.id), _why(item[1]))
                return
            if step == "relay":
                yield item[1].text
    async for piece in _the_rest(job, relay.text):
        yield piece


def _joined(event: StreamEvent, relay: AnswerRelay) -> bool:
    """The job went back to `queued` before any of its text was relayed: a worker made it follow
    an identical job in flight (or a retry is coming: its record says which)."""
    return event.kind == "status" and event.status is JobStatus.queued and not relay.text


async def _the_rest(job: Job, relayed: str) -> AsyncIterator[str | Job | Interrupted]:
    """What the record's answer has beyond the text relayed (all of it when nothing was, e.g.
    the stream lost its start), then the job."""
    if job.status is JobStatus.succeeded and job.result is not None:
        content = job.result.content
        if not content.startswith(relayed):
            yield Interrupted(job, "the streamed text is not the answer the job recorded")
            return
        if len(content) > len(relayed):
            yield content[len(relayed) :]
    yield job


def _why(event: StreamEvent) -> str:
    if event.kind == "status":
        return f"attempt {event.attempt} failed; the job will be tried again"
    return f"the answer's stream broke off ({event.provider}, attempt {event.attempt} took over)"


async def follow_job(
    chat: ChatService, tenant: str, job_id: str, after: str, max_s: float
) -> AsyncIterator[Entry | Job]:
    """The job's events after id `after` (START: all that are kept), then the job once it has
    ended. Stops without the job after `max_s`, when the caller can resume after the last id.
    Without a channel, or after END, only the job comes."""
    if chat.streams is None or after == END:
        job = await chat.wait_finished(tenant, job_id, max_s)
        if job.status.is_terminal:
            yield job
        return
    async for item in _follow(chat, chat.streams, tenant, job_id, after, max_s=max_s):
        if not isinstance(item, Job) or item.status.is_terminal:
            yield item


async def _follow(
    chat: ChatService,
    streams: JobStreams,
    tenant: str,
    job_id: str,
    after: str,
    *,
    idle_s: float | None = None,
    max_s: float | None = None,
) -> AsyncIterator[Entry | Job]:
    """The stream's events after `after` until one ends the job, or its record says it has ended
    (then the events still to come), then the job as recorded. Also stops, yielding the job as
    it is, after `idle_s` with nothing new or `max_s` in all."""
    started = quiet_since = time.monotonic()
    wait_s = 0.0  # at first, not at all: a job that has already ended is answered at once
    while True:
        entries = await streams.read(job_id, after, wait_s)
        wait_s = RECHECK_S
        for entry in entries:
            after = entry[0]
            yield entry
        now = time.monotonic()
        if any(event.ends for _, event in entries):
            break
        if entries:
            quiet_since = now
        elif (job := await chat.get(tenant, job_id)).status.is_terminal:
            for entry in await streams.read(job_id, after, 0):
                yield entry
            yield job
            return
        if _over(now - quiet_since, idle_s) or _over(now - started, max_s):
            break
    yield await chat.get(tenant, job_id)


def _over(elapsed: float, limit: float | None) -> bool:
    return limit is not None and elapsed >= limit
