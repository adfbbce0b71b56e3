"""Coalescing as the composition root wires it (executor, FinishedJobs, ChatService and
BatchService cancels), with fakes at the ports: what happens when a leader does not answer, or its
end goes unseen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.factory import ServiceFactory, Services
from shared.job_writes import JobWrites
from shared.models import BatchItem, Job, JobCreate, JobError, JobStatus, utcnow
from shared.transitions import JobOutcome
from tests.conftest import make_settings
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM, FakeResultCache

PROMPT = {"messages": [{"role": "user", "content": "same"}]}
NOTE = JobError(code="retrying", message="the provider was busy")


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    factory = ServiceFactory(
        make_settings(),
        store=FakeJobStore(),
        cache=FakeResultCache(),
        queue=FakeJobQueue(),
        llm=FakeLLM("gemini"),
    )
    started = await factory.start(consume=False)
    yield started
    await started.close()


def queue(services: Services) -> FakeJobQueue:
    assert isinstance(services.queue, FakeJobQueue)
    return services.queue


async def stored(services: Services, job_id: str) -> Job:
    job = await services.store.get_job(job_id)
    assert job is not None
    return job


async def submit(services: Services) -> str:
    return (await services.chat.submit("t1", JobCreate.model_validate(PROMPT))).id


async def lead(services: Services, job_id: str, *, then_retry: bool = False) -> None:
    """A worker claims the job, which takes the key; `then_retry`: its attempt failed, and it
    waits for the next one (queued, key still held)."""
    now = utcnow()
    leader = await JobWrites(services.store).claim(
        job_id, lease_until=now + timedelta(minutes=1), now=now
    )
    assert leader is not None and services.executor.coalescing is not None
    assert not (await services.executor.coalescing.join(leader)).waits
    if then_retry:
        await JobWrites(services.store).requeue(job_id, attempt=1, note=NOTE, not_before=None)


async def follower(services: Services, leader_id: str) -> str:
    job_id = await submit(services)
    assert await services.executor.deliver(job_id) is None  # acknowledged: it waits
    assert (await stored(services, job_id)).waiting_on == leader_id
    return job_id


async def test_a_follower_whose_leaders_end_went_unseen_settles_when_delivered_again(
    services: Services,
) -> None:
    leader = await submit(services)
    await lead(services, leader)
    waiting = await follower(services, leader)
    result = FakeLLM("gemini").complete  # the answer the leader got
    answer = await result(JobCreate.model_validate(PROMPT).chat_request())
    outcome = JobOutcome(JobStatus.succeeded, expect=JobStatus.running, result=answer)
    assert await JobWrites(services.store).finish(leader, outcome) is not None  # no fan-out

    assert await services.executor.deliver(waiting) is None

    job = await stored(services, waiting)
    assert job.status is JobStatus.succeeded and job.coalesced and job.result == answer


async def test_cancelling_a_leader_waiting_for_its_retry_runs_its_followers_alone(
    services: Services,
) -> None:
    leader = await submit(services)
    await lead(services, leader, then_retry=True)
    waiting = await follower(services, leader)
    queue(services).pending.clear()

    await services.chat.cancel("t1", leader)

    assert queue(services).pending == [waiting]
    assert await services.executor.deliver(waiting) is None
    job = await stored(services, waiting)
    assert job.status is JobStatus.succeeded and not job.coalesced and job.attempts == 1


async def test_cancelling_a_batch_releases_the_followers_of_its_leaders(
    services: Services,
) -> None:
    item = BatchItem.model_validate({"custom_id": "a", **PROMPT})
    batch = await services.batches.create("t1", [item])
    (leader,), _ = await services.store.list_jobs("t1", batch_id=batch.id)
    await lead(services, leader.id, then_retry=True)
    waiting = await follower(services, leader.id)
    queue(services).pending.clear()

    await services.batches.cancel("t1", batch.id)

    assert queue(services).pending == [waiting]
    assert (await stored(services, waiting)).waiting_on is None
