"""Long-polls are woken by their job's end, not by the next read of the store.

The store is re-read only every RECHECK_S; the tests make that a minute, so a long-poll that
returns within seconds can only have been woken by the job's end."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import service
from shared.adapters.wakeups.local import LocalJobWakeups
from shared.job_writes import JobWrites
from shared.models import Job, JobCreate, JobStatus
from shared.service import ChatService
from shared.transitions import JobOutcome
from tests.fakes import FakeJobQueue, FakeJobStore
from tests.unit.conftest import T1, chat, running_api

NEXT_READ_S = 60.0


@pytest.fixture(autouse=True)
def slow_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "RECHECK_S", NEXT_READ_S)


async def test_a_long_poll_returns_as_soon_as_the_job_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_api() as api:
        reads: list[str] = []
        get_job = api.store.get_job

        async def counted(job_id: str, tenant: str | None = None) -> Job | None:
            reads.append(job_id)
            return await get_job(job_id, tenant)

        monkeypatch.setattr(api.store, "get_job", counted)
        job = (await api.submit(chat("wake me"))).json()
        waiting = asyncio.create_task(
            api.client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}, headers=T1)
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()  # it holds: the job is still queued
        polled = reads.count(job["id"])
        await api.queue.drain()  # an in-process worker runs it
        finished = time.monotonic()
        answer = await asyncio.wait_for(waiting, timeout=5)
        woken_after_s = time.monotonic() - finished
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    assert polled == 1  # one read, then it slept on the event: no polling meanwhile
    assert woken_after_s < NEXT_READ_S / 100  # well before the store would have been read again


async def test_a_cancel_wakes_its_long_polls() -> None:
    store, wakeups = FakeJobStore(), LocalJobWakeups()
    chat_service = ChatService(store, None, FakeJobQueue(), wakeups=wakeups)
    chat_service.on_finished = lambda job: wakeups.notify([job.id])
    job = await chat_service.submit("t1", JobCreate.model_validate(chat("cancel me")))
    waiting = asyncio.create_task(chat_service.get("t1", job.id, wait_s=30))
    await asyncio.sleep(0.05)
    await chat_service.cancel("t1", job.id)
    done = await asyncio.wait_for(waiting, timeout=5)
    assert done.status is JobStatus.cancelled
    assert wakeups.watched == 0  # the waiter unregistered


async def test_without_job_wakeups_the_store_is_polled() -> None:
    store = FakeJobStore()
    chat_service = ChatService(store, None, FakeJobQueue())  # no JobWakeups (e.g. SQS)
    job = await chat_service.submit("t1", JobCreate.model_validate(chat("poll me")))
    waiting = asyncio.create_task(chat_service.get("t1", job.id, wait_s=30))
    await asyncio.sleep(0.05)
    outcome = JobOutcome(JobStatus.cancelled, expect=JobStatus.queued)
    await JobWrites(store).finish(job.id, outcome)  # nobody notifies: only a re-read sees it
    done = await asyncio.wait_for(waiting, timeout=5)
    assert done.status is JobStatus.cancelled


async def test_many_waiters_on_one_job_are_all_woken() -> None:
    wakeups = LocalJobWakeups()
    with wakeups.watch("job_1") as first, wakeups.watch("job_1") as second:
        await wakeups.notify(["job_1", "job_unwatched"])
        assert first.is_set() and second.is_set()
    assert wakeups.watched == 0
