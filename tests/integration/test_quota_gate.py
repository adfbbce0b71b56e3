"""Consumers that pick their own jobs hold off while no provider may be called (QuotaGate,
worker/quota_gate.py; docs/adr/0014): the arq worker's batch runner (a Supervisor on the test
Valkey) and the SQS poller (moto). The only provider's quota (3 calls a WINDOW_S window here) is
full when they start: they take nothing, every job stays queued with no claim, and once the
window frees the jobs run a few at a time, none of them sent back to wait, the batch runner's in
the batch's order (each window's calls go to the batch's next jobs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.setup import AwsLayout
from shared.adapters.llm.circuit import CircuitBreaker
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.quoted import QuotedProvider
from shared.adapters.quota.memory import MemoryProviderQuota
from shared.adapters.quota.redis import RedisProviderQuota
from shared.config import Settings
from shared.factory import ServiceFactory, Services
from shared.keys import Caller
from shared.models import BatchItem, Job, JobStatus, Message
from shared.ports import ProviderQuota
from shared.quotas import QuotaLimits
from tests.conftest import make_settings
from tests.fakes import FakeLLM
from worker.quota_gate import QuotaGate
from worker.sqs_consumer import SqsConsumer
from worker.sqs_poller import PriorityPoller
from worker.supervisor import Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]

RPM, WINDOW_S = 3, 4.0
JOBS = 7
CONCURRENCY = 4
HELD_S = 1.0  # looked at while the quota is still full (it frees WINDOW_S after the test fills it)


def quoted_llm(quota: ProviderQuota) -> tuple[FallbackLLM, FakeLLM]:
    gemini = FakeLLM("gemini")
    return FallbackLLM(QuotedProvider(gemini, quota), None, CircuitBreaker(5, 30)), gemini


async def fill(quota: ProviderQuota) -> None:
    for _ in range(RPM):
        assert await quota.acquire("gemini") == 0
    assert await quota.wait_s("gemini") > 0


async def queue_batch(services: Services) -> str:
    items = [
        BatchItem(custom_id=f"c{n}", messages=[Message(role="user", content=f"job {n}")])
        for n in range(JOBS)
    ]
    batch = await services.batches.create("A", items, caller=Caller("A"))
    return batch.id


async def batch_jobs(services: Services, batch_id: str) -> list[Job]:
    jobs, _ = await services.store.list_jobs("A", batch_id=batch_id, limit=100)
    return jobs


async def assert_held(services: Services, batch_id: str, llm: FakeLLM) -> None:
    """For HELD_S: nothing taken (a job taken would have been claimed and sent back to wait,
    its wait counted), nothing called."""
    for _ in range(round(HELD_S / 0.05)):
        jobs = await batch_jobs(services, batch_id)
        held = {(j.status, j.attempts, j.quota_waited_s, j.error is None) for j in jobs}
        assert held == {(JobStatus.queued, 0, 0.0, True)}, jobs
        assert llm.requests == []
        await asyncio.sleep(0.05)


async def until_done(services: Services, batch_id: str) -> list[Job]:
    for _ in range(600):  # 60 s at most
        jobs = await batch_jobs(services, batch_id)
        if all(j.status.is_terminal for j in jobs):
            return jobs
        await asyncio.sleep(0.1)
    raise AssertionError("the batch did not finish")


def assert_ran_without_waiting(jobs: list[Job], llm: FakeLLM) -> None:
    assert {(j.status, j.attempts) for j in jobs} == {(JobStatus.succeeded, 1)}
    assert [j.quota_waited_s for j in jobs] == [0.0] * JOBS  # none sent back to wait
    assert len(llm.requests) == JOBS


def prompts(llm: FakeLLM) -> list[str]:
    return [r.messages[-1].content for r in llm.requests]


async def test_the_batch_runner_takes_no_batch_job_while_the_quota_is_full(
    redis_url: str, redis_db: Any, tmp_path: Path
) -> None:
    settings = make_settings(
        queue_backend="arq",
        cache_backend="none",
        redis_url=redis_url,
        sqlite_path=str(tmp_path / "db.sqlite"),
        worker_concurrency=CONCURRENCY,
    )
    quota = RedisProviderQuota(redis_url, {"gemini": QuotaLimits(rpm=RPM)}, window_s=WINDOW_S)
    llm, gemini = quoted_llm(quota)
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    supervisor = Supervisor(settings, services=services, handle_signals=False)
    try:
        await fill(quota)
        batch_id = await queue_batch(services)
        running = asyncio.create_task(supervisor.run())
        await assert_held(services, batch_id, gemini)
        jobs = await until_done(services, batch_id)
        supervisor.stop()
        await asyncio.wait_for(running, 30)
    finally:
        await services.close()
        await quota.close()
    assert_ran_without_waiting(jobs, gemini)
    # the batch's order, kept: each window's calls went to the next jobs of the batch (within
    # a window, jobs taken together run concurrently)
    order = [f"job {n}" for n in range(JOBS)]
    windows = range(0, JOBS, RPM)
    assert [set(prompts(gemini)[w : w + RPM]) for w in windows] == [
        set(order[w : w + RPM]) for w in windows
    ]


@pytest.fixture
def sqs_settings(aws_layout: AwsLayout, moto_endpoint: str, tmp_path: Path) -> Settings:
    return make_settings(
        queue_backend="sqs",
        cache_backend="none",
        sqlite_path=str(tmp_path / "db.sqlite"),
        sqs_queue_url=aws_layout.queue_url,
        sqs_batch_queue_url=aws_layout.batch_queue_url,
        aws_endpoint_url=moto_endpoint,
        worker_concurrency=CONCURRENCY,
    )


@pytest.fixture
async def quota() -> MemoryProviderQuota:
    return MemoryProviderQuota({"gemini": QuotaLimits(rpm=RPM)}, window_s=WINDOW_S)


@pytest.fixture
async def sqs_services(
    sqs_settings: Settings, quota: MemoryProviderQuota
) -> AsyncIterator[tuple[Services, FakeLLM]]:
    llm, gemini = quoted_llm(quota)
    services = await ServiceFactory(sqs_settings, llm=llm).start(consume=False)
    yield services, gemini
    await services.close()


async def test_the_sqs_poller_receives_nothing_while_the_quota_is_full(
    sqs_services: tuple[Services, FakeLLM], quota: MemoryProviderQuota
) -> None:
    services, gemini = sqs_services
    queue = services.sqs
    assert queue is not None
    await fill(quota)
    batch_id = await queue_batch(services)
    consumer = SqsConsumer(services.executor, queue, CONCURRENCY)
    gate = QuotaGate(services.executor.providers_wait_s, CONCURRENCY)
    poller = PriorityPoller(consumer, queue, 60, idle_wait_s=1, gate=gate)
    stop = asyncio.Event()
    polling = asyncio.create_task(poller.run(stop))
    try:
        await assert_held(services, batch_id, gemini)
        jobs = await until_done(services, batch_id)
    finally:
        stop.set()
        await asyncio.wait_for(polling, 30)
    assert_ran_without_waiting(jobs, gemini)
    assert gate.holds >= 2  # before the first window freed, and before the second
