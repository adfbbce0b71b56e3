"""Fairness of the in-process queue, seen from the services: a big batch cannot starve others.

Single jobs go ahead of batch jobs, and the jobs of different batches are taken in turn. A
recording LLM notes the order in which prompts finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from shared.adapters.queue.inprocess import InProcessJobQueue
from shared.factory import ServiceFactory, Services
from shared.models import BatchItem, BatchStatus, ChatRequest, Completion, JobCreate
from tests.conftest import make_settings
from tests.fakes import FakeJobStore, FakeResultCache, WholeAnswer

CONCURRENCY = 4


class RecordingLLM(WholeAnswer):
    """Answers every prompt after `delay_s`, recording the order prompts finish in."""

    name = "recorder"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.finished: list[str] = []

    async def start(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> Completion:
        await asyncio.sleep(self.delay_s)
        prompt = request.messages[-1].content
        self.finished.append(prompt)
        return Completion(content=prompt, provider=self.name, model="m")

    async def close(self) -> None:
        return None


@pytest.fixture
def llm() -> RecordingLLM:
    return RecordingLLM(delay_s=0.002)


@pytest.fixture
async def services(llm: RecordingLLM) -> AsyncIterator[Services]:
    factory = ServiceFactory(
        make_settings(worker_concurrency=CONCURRENCY),
        store=FakeJobStore(),
        cache=FakeResultCache(),
        queue=InProcessJobQueue(concurrency=CONCURRENCY),
        llm=llm,
    )
    running = await factory.start(consume=True)
    try:
        yield running
    finally:
        await running.close()


def items(prefix: str, count: int) -> list[BatchItem]:
    return [
        BatchItem.model_validate(
            {"custom_id": str(n), "messages": [{"role": "user", "content": f"{prefix}-{n}"}]}
        )
        for n in range(count)
    ]


async def until(predicate: Callable[[], bool], limit_s: float = 20) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.001)


async def until_completed(services: Services, batch_id: str, limit_s: float = 10) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            batch = await services.store.get_batch(batch_id)
            assert batch is not None
            if batch.status == BatchStatus.completed:
                assert batch.counts.succeeded == batch.counts.total
                return
            await asyncio.sleep(0.005)


async def test_a_single_job_goes_ahead_of_a_big_batch(
    services: Services, llm: RecordingLLM
) -> None:
    await services.batches.create("tenant-a", items("a", 200))
    await until(lambda: len(llm.finished) >= 2 * CONCURRENCY)  # the batch is under way

    finished_before = len(llm.finished)
    body = JobCreate.model_validate({"messages": [{"role": "user", "content": "b-single"}]})
    await services.chat.submit("tenant-b", body)
    await until(lambda: len(llm.finished) == 201)

    position = llm.finished.index("b-single")
    # B waits only for a worker to come free: at most the jobs already running finish first.
    assert position <= finished_before + 2 * CONCURRENCY, (position, finished_before)
    assert position < 50  # long before most of A's 200 jobs


async def test_two_batches_take_turns(services: Services, llm: RecordingLLM) -> None:
    first = await services.batches.create("tenant-a", items("a", 100))
    second = await services.batches.create("tenant-c", items("c", 40))
    # A's workers may already have finished a few jobs while C was being accepted: count from here.
    finished_before = len(llm.finished)
    await until(lambda: len(llm.finished) == 140)

    c_positions = [n for n, prompt in enumerate(llm.finished) if prompt.startswith("c-")]
    # C does not wait for A's 100 jobs: only for the jobs already running when it arrived.
    assert c_positions[0] < finished_before + 2 * CONCURRENCY + 2, (c_positions, finished_before)
    # With turns, C's 40 jobs finish within about 80 jobs of its arrival, not after all of A's.
    assert c_positions[-1] < finished_before + 80 + 2 * CONCURRENCY, (c_positions, finished_before)
    assert finished_before < 40  # else the bound above could not tell turns from first-come
    for batch_id in (first.id, second.id):
        await until_completed(services, batch_id)
