"""Sweeper: jobs put back on the queue keep their batch's place in the fair interleave."""

from __future__ import annotations

from collections.abc import Sequence

from shared.adapters.queue.inprocess import InProcessJobQueue
from shared.batches import BatchService
from shared.models import Batch, BatchCounts, ChatRequest, Job, Message
from shared.sweeps import Sweeper
from tests.fakes import FakeJobQueue, FakeJobStore

REQUEST = ChatRequest(messages=[Message(role="user", content="x")])


class GroupRecordingQueue(FakeJobQueue):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str | None, list[str]]] = []

    async def enqueue(self, job_id: str, delay_s: float = 0) -> None:
        self.calls.append((None, [job_id]))

    async def enqueue_many(self, job_ids: Sequence[str], group: str | None = None) -> None:
        self.calls.append((group, list(job_ids)))


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
    order = [queue._take() for _ in range(7)]
    assert order[0] == single.id
    assert order[1:] == [a[0], b[0], a[1], b[1], a[2], b[2]]
