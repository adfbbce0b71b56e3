"""Sweeper: jobs put back on the queue keep their batch's place in the fair interleave, and what
JOB_RETENTION_DAYS no longer keeps is purged in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from shared.adapters.queue.inprocess import InProcessJobQueue
from shared.batches import BatchService
from shared.lanes import Lane
from shared.models import Batch, BatchCounts, ChatRequest, Job, JobStatus, Message, utcnow
from shared.sweeps import PURGE_CHUNK, Sweeper, SweepPolicy, none_lost
from tests.fakes import FakeJobQueue, FakeJobStore

REQUEST = ChatRequest(messages=[Message(role="user", content="x")])


class GroupRecordingQueue(FakeJobQueue):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str | None, list[str]]] = []
        self.lanes_of: dict[str, Lane | None] = {}

    async def enqueue(self, job_id: str, delay_s: float = 0, lane: Lane | None = None) -> None:
        self.calls.append((None, [job_id]))
        self.lanes_of[job_id] = lane

    async def enqueue_many(
        self, job_ids: Sequence[str], group: str | None = None, lane: Lane | None = None
    ) -> None:
        self.calls.append((group, list(job_ids)))
        self.lanes_of |= dict.fromkeys(job_ids, lane)


async def stored_batch(store: FakeJobStore, name: str, size: int) -> list[str]:
    batch = Batch(id=name, tenant="t1", counts=BatchCounts(total=size, queued=size))
    jobs = [Job(tenant="t1", request=REQUEST, batch_id=name) for _ in range(size)]
    await store.create_batch(batch, jobs)
    return [job.id for job in jobs]


async def test_recovered_batch_jobs_go_back_in_their_batch_group() -> None:
    store, queue = FakeJobStore(), GroupRecordingQueue()
    a = await stored_batch(store, "batch_a", 3)
    single = await store.create_job(Job(tenant="t1", request=REQUEST))
    b = await stored_batch(store, "batch_b", 2)
    sweeper = Sweeper(store, BatchService(store, None, queue), queue)
    assert await sweeper.recover_after_restart() == 6
    assert sorted(queue.calls, key=str) == sorted(
        [(None, [single.id]), ("batch_a", a), ("batch_b", b)], key=str
    )


async def test_after_a_restart_singles_go_first_and_batches_take_turns() -> None:
    store, queue = FakeJobStore(), InProcessJobQueue(concurrency=1)
    a = await stored_batch(store, "batch_a", 3)
    b = await stored_batch(store, "batch_b", 3)
    single = await store.create_job(Job(tenant="t1", request=REQUEST))
    await Sweeper(store, BatchService(store, None, queue), queue).recover_after_restart()
    order = [queue._take()[0] for _ in range(7)]
    assert order[0] == single.id
    assert order[1:] == [a[0], b[0], a[1], b[1], a[2], b[2]]


async def test_recovered_jobs_keep_their_priority_and_tenant() -> None:
    store, queue = FakeJobStore(), GroupRecordingQueue()
    batch = Batch(id="b", tenant="t2", priority="low", counts=BatchCounts(total=1, queued=1))
    low = Job(tenant="t2", request=REQUEST, batch_id="b", priority="low")
    await store.create_batch(batch, [low])
    high = await store.create_job(Job(tenant="t1", request=REQUEST, priority="high"))
    await Sweeper(store, BatchService(store, None, queue), queue).recover_after_restart()
    assert queue.lanes_of == {low.id: Lane("low", "t2"), high.id: Lane("high", "t1")}


def expired_job(days_ago: float) -> Job:
    ended = utcnow() - timedelta(days=days_ago)
    return Job(
        tenant="t1",
        request=REQUEST,
        status=JobStatus.succeeded,
        created_at=ended,
        updated_at=ended,
        completed_at=ended,
    )


async def test_a_sweep_purges_what_expired_chunk_by_chunk() -> None:
    store, queue = FakeJobStore(retention=timedelta(days=30)), FakeJobQueue()
    old = [await store.create_job(expired_job(31)) for _ in range(PURGE_CHUNK * 2 + 1)]
    young = await store.create_job(expired_job(29))
    waiting = await store.create_job(
        Job(tenant="t1", request=REQUEST, created_at=old[0].created_at)
    )
    await Sweeper(store, BatchService(store, None, queue), queue).sweep(min_age_s=60)
    assert set(store.jobs) == {young.id, waiting.id}


class PurgeSignallingStore(FakeJobStore):
    def __init__(self, retention: timedelta) -> None:
        super().__init__(retention)
        self.purged = asyncio.Event()

    async def purge_expired(self, limit: int) -> int:
        deleted = await super().purge_expired(limit)
        self.purged.set()
        return deleted


async def test_the_sweep_loop_purges_at_once_and_stops_when_told() -> None:
    store, queue = PurgeSignallingStore(retention=timedelta(days=1)), FakeJobQueue()
    old = await store.create_job(expired_job(2))
    stop = asyncio.Event()
    policy = SweepPolicy(lost_after_s=3600 * 4, lost=none_lost)  # a sweep an hour at most
    sweeper = Sweeper(store, BatchService(store, None, queue), queue, policy)
    running = asyncio.create_task(sweeper.sweep_forever(stop))
    await asyncio.wait_for(store.purged.wait(), timeout=5)
    assert old.id not in store.jobs
    stop.set()
    await asyncio.wait_for(running, timeout=5)  # not the interval


async def test_a_queue_that_holds_everything_gets_nothing_enqueued_again() -> None:
    store, queue = FakeJobStore(), FakeJobQueue()
    stale = await store.create_job(expired_job(0).model_copy(update={"status": JobStatus.queued}))
    sweeper = Sweeper(store, BatchService(store, None, queue), queue,
                      SweepPolicy(lost_after_s=0.0, lost=none_lost))  # fmt: skip
    assert await sweeper.sweep_due() == 0
    assert stale.id not in queue.pending
