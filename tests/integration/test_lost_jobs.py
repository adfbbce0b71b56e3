"""worker.recovery: jobs the queue lost (Redis flushed) are enqueued again from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix

from shared.factory import ServiceFactory, Services
from shared.models import ChatRequest, Job, JobStatus, Message, utcnow
from tests.conftest import make_settings
from tests.fakes import FakeLLM
from worker.recovery import LOCK_KEY, lost_after_s, reenqueue_lost_jobs, sweep_interval_s
from worker.settings import build_worker

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
async def arq_redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


def stale_job(minutes: float) -> Job:
    then = utcnow() - timedelta(minutes=minutes)
    request = ChatRequest(messages=[Message(role="user", content=f"lost {minutes}")])
    return Job(tenant="t", request=request, created_at=then, updated_at=then)


async def test_lost_jobs_are_enqueued_again_and_run(
    services: Services, arq_redis: ArqRedis
) -> None:
    lost = await services.store.create_job(stale_job(minutes=30))
    held = await services.store.create_job(stale_job(minutes=30))
    fresh = await services.store.create_job(stale_job(minutes=0))
    await services.queue.enqueue(held.id)  # arq still holds this one

    assert await reenqueue_lost_jobs(services, arq_redis) == 1
    assert await reenqueue_lost_jobs(services, arq_redis) == 0  # the lock: one sweep a minute

    await build_worker(services.settings, burst=True, services_override=services).main()
    statuses = {j: (await services.store.get_job(j)).status for j in (lost.id, held.id, fresh.id)}  # type: ignore[union-attr]
    assert statuses == {
        lost.id: JobStatus.succeeded,
        held.id: JobStatus.succeeded,
        fresh.id: JobStatus.queued,  # too young to call lost: it may still be on its way
    }


async def test_nothing_to_do_when_the_queue_holds_everything(
    services: Services, arq_redis: ArqRedis
) -> None:
    job = await services.store.create_job(stale_job(minutes=30))
    await services.queue.enqueue(job.id)
    await arq_redis.delete(LOCK_KEY)
    assert await reenqueue_lost_jobs(services, arq_redis) == 0


async def test_a_job_lost_about_a_minute_ago_is_enqueued_again(
    services: Services, arq_redis: ArqRedis
) -> None:
    """The default LOST_JOB_AFTER_S is a minute; a job's lease (45 + 5 s) is shorter."""
    assert lost_after_s(services.settings) == 60
    assert sweep_interval_s(services.settings) <= 15
    lost = await services.store.create_job(stale_job(minutes=1.1))
    young = await services.store.create_job(stale_job(minutes=0.9))
    assert await reenqueue_lost_jobs(services, arq_redis) == 1
    assert await arq_redis.exists(job_key_prefix + lost.id)
    assert not await arq_redis.exists(job_key_prefix + young.id)


def test_a_job_is_never_taken_for_lost_within_its_lease() -> None:
    settings = make_settings(llm_timeout_s=60, lost_job_after_s=10)
    lease_s = settings.job_timeout_s + 5  # JobExecutor's lease
    assert lost_after_s(settings) > lease_s
    assert sweep_interval_s(settings) == 15
