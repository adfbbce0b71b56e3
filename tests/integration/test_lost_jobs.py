"""The lost-job sweep with arq: jobs the queue lost (Redis flushed) run again from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus as ArqJobStatus

from shared.adapters.choose import Adapters
from shared.adapters.queue.arq import ArqJobQueue
from shared.config import Settings
from shared.factory import ServiceFactory, Services
from shared.models import ChatRequest, Job, JobStatus, Message, utcnow
from shared.sweeps import LOCK_NAME
from tests.conftest import make_settings
from tests.fakes import FakeLLM
from worker.supervisor import Supervisor

pytestmark = pytest.mark.integration


@pytest.fixture
async def services(redis_url: str, redis_db: Any, tmp_path: Path) -> AsyncIterator[Services]:
    settings = make_settings(
        queue_backend="arq", redis_url=redis_url, sqlite_path=str(tmp_path / "db.sqlite")
    )
    services = await ServiceFactory(settings, llm=FakeLLM()).start(consume=False)
    yield services
    await services.close()


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ArqJobQueue]:
    queue = ArqJobQueue(redis_url)
    yield queue
    await queue.close()


def stale_job(minutes: float) -> Job:
    then = utcnow() - timedelta(minutes=minutes)
    request = ChatRequest(messages=[Message(role="user", content=f"lost {minutes}")])
    return Job(tenant="t", request=request, created_at=then, updated_at=then)


async def reenqueue_lost_jobs(services: Services, queue: ArqJobQueue) -> int:
    """One sweep, as every arq worker's sweep loop makes it (the queue's own policy)."""
    return await services.sweeper.sweep_due()


def lost_after_s(settings: Settings) -> float:
    return Adapters(settings).sweep_policy(ArqJobQueue("redis://127.0.0.1:1")).lost_after_s


def sweep_interval_s(settings: Settings) -> float:
    return Adapters(settings).sweep_policy(ArqJobQueue("redis://127.0.0.1:1")).interval_s


async def status_of(services: Services, job_id: str) -> JobStatus:
    job = await services.store.get_job(job_id)
    assert job is not None, job_id
    return job.status


async def test_lost_jobs_are_enqueued_again_and_run(services: Services, queue: ArqJobQueue) -> None:
    lost = await services.store.create_job(stale_job(minutes=30))
    held = await services.store.create_job(stale_job(minutes=30))
    fresh = await services.store.create_job(stale_job(minutes=0))
    await services.queue.enqueue(held.id)  # arq still holds this one

    assert await reenqueue_lost_jobs(services, queue) == 1
    assert await reenqueue_lost_jobs(services, queue) == 0  # the lock: one sweep a minute

    await Supervisor(services.settings, burst=True, services=services).run()
    statuses = {j: await status_of(services, j) for j in (lost.id, held.id, fresh.id)}
    assert statuses == {
        lost.id: JobStatus.succeeded,
        held.id: JobStatus.succeeded,
        fresh.id: JobStatus.queued,  # too young to call lost: it may still be on its way
    }


async def test_nothing_to_do_when_the_queue_holds_everything(
    services: Services, queue: ArqJobQueue
) -> None:
    job = await services.store.create_job(stale_job(minutes=30))
    await services.queue.enqueue(job.id)
    await (await queue.connected()).delete(LOCK_NAME)
    assert await reenqueue_lost_jobs(services, queue) == 0


async def test_a_job_lost_about_a_minute_ago_is_enqueued_again(
    services: Services, queue: ArqJobQueue
) -> None:
    """The default LOST_JOB_AFTER_S is a minute; the redelivery horizon (45 + 5 s) is shorter."""
    assert lost_after_s(services.settings) == 60
    assert sweep_interval_s(services.settings) <= 15
    lost = await services.store.create_job(stale_job(minutes=1.1))
    young = await services.store.create_job(stale_job(minutes=0.9))
    assert await reenqueue_lost_jobs(services, queue) == 1
    pool = await queue.connected()
    assert await ArqJob(lost.id, pool).status() is ArqJobStatus.queued
    assert await ArqJob(young.id, pool).status() is ArqJobStatus.not_found


def test_a_job_is_never_taken_for_lost_within_its_lease() -> None:
    settings = make_settings(
        llm_timeout_s=60, lost_job_after_s=10, queue_backend="arq", redis_url="redis://127.0.0.1:1"
    )
    lease_s = settings.job_timeout_s + 5  # JobExecutor's lease
    assert lost_after_s(settings) > lease_s
    assert sweep_interval_s(settings) == 15


async def test_batch_jobs_waiting_in_their_group_are_not_lost(
    services: Services, queue: ArqJobQueue
) -> None:
    """A big batch waits in its group for longer than LOST_JOB_AFTER_S: it is not lost."""
    waiting = await services.store.create_job(stale_job(minutes=30))
    await services.queue.enqueue_many([waiting.id], group="batch_1")
    assert await reenqueue_lost_jobs(services, queue) == 0
