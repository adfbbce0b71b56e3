"""BatchService in process with its real parts: SQLite, the in-process queue, the memory cache and
the Gemini SDK talking to the stub server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.errors import Conflict, Overloaded
from shared.factory import ServiceFactory, Services
from shared.models import Batch, BatchItem, BatchStatus, JobStatus
from tests.conftest import make_settings
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def services(tmp_path: Path, llm_stub: LLMStub) -> AsyncIterator[Services]:
    settings = make_settings(
        sqlite_path=str(tmp_path / "chatjobs.db"),
        gemini_api_key="stub-key",
        gemini_base_url=llm_stub.gemini_base_url,
        llm_timeout_s=5,
        worker_concurrency=4,
        webhook_retry_schedule="3600",  # scheduled, never sent during the test
    )
    running = await ServiceFactory(settings).start(consume=True)
    try:
        yield running
    finally:
        await running.close()


def items(count: int, prefix: str = "p") -> list[BatchItem]:
    return [
        BatchItem.model_validate(
            {"custom_id": f"c{n}", "messages": [{"role": "user", "content": f"{prefix} {n}"}]}
        )
        for n in range(count)
    ]


async def finished(services: Services, batch_id: str, limit_s: float = 30) -> Batch:
    async with asyncio.timeout(limit_s):
        while True:
            batch = await services.batches.get("t1", batch_id)
            if batch.status in (BatchStatus.completed, BatchStatus.cancelled):
                return batch
            await asyncio.sleep(0.02)


async def lines(services: Services, batch_id: str) -> list[dict[str, Any]]:
    return [line async for line in services.batches.results("t1", batch_id)]


async def test_a_batch_runs_then_the_same_batch_is_answered_from_the_cache(
    services: Services, llm_stub: LLMStub
) -> None:
    first = await services.batches.create("t1", items(30), webhook_url=HOOK)
    done = await finished(services, first.id)
    assert done.counts.succeeded == 30 and done.completed_at is not None
    assert done.webhook is not None and done.webhook.state == "pending"
    assert llm_stub.stats()["gemini"] == 30
    results = await lines(services, first.id)
    assert [r["custom_id"] for r in results] == [f"c{n}" for n in range(30)]
    assert results[7]["result"]["content"] == "gemini says: p 7"

    again = await services.batches.create("t1", items(30))
    assert again.status is BatchStatus.completed  # every answer came from the cache
    assert again.counts.succeeded == 30 and again.counts.queued == 0
    assert llm_stub.stats()["gemini"] == 30
    cached = await lines(services, again.id)
    assert [r["result"] for r in cached] == [r["result"] for r in results]


async def test_cancel_mid_flight_lets_running_jobs_finish_and_closes_the_batch_once(
    services: Services, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "stall", seconds=0.5)  # answers, slowly
    batch = await services.batches.create("t1", items(40), webhook_url=HOOK)
    async with asyncio.timeout(10):  # every worker holds a job
        while True:
            if (await services.batches.get("t1", batch.id)).counts.running == 4:
                break
            await asyncio.sleep(0.01)

    cancelling = await services.batches.cancel("t1", batch.id)
    assert cancelling.status is BatchStatus.cancelling and cancelling.webhook is None
    assert cancelling.counts.cancelled >= 30

    final = await finished(services, batch.id)
    assert final.status is BatchStatus.cancelled
    counts = final.counts
    assert counts.queued == counts.running == counts.failed == 0
    assert counts.succeeded + counts.cancelled == 40 and 4 <= counts.succeeded <= 10
    assert llm_stub.stats()["gemini"] == counts.succeeded
    assert final.webhook is not None
    with pytest.raises(Conflict):  # an ended batch cannot be cancelled again
        await services.batches.cancel("t1", batch.id)
    assert (await services.batches.get("t1", batch.id)).webhook == final.webhook

    statuses = [r["status"] for r in await lines(services, batch.id)]
    assert statuses.count(JobStatus.succeeded) == counts.succeeded
    assert statuses.count(JobStatus.cancelled) == counts.cancelled


async def test_embedded_replay_answers_the_batch_while_the_backlog_is_full(
    tmp_path: Path, llm_stub: LLMStub
) -> None:
    """Embedded mode (SQLite, in-process workers): with MAX_QUEUED_JOBS reached, repeating the
    batch with its Idempotency-Key answers that batch; a new batch is refused (Overloaded)."""
    llm_stub.set("gemini", "stall", seconds=2)  # the one worker stays busy
    settings = make_settings(
        sqlite_path=str(tmp_path / "chatjobs.db"),
        gemini_api_key="stub-key",
        gemini_base_url=llm_stub.gemini_base_url,
        llm_timeout_s=1,
        worker_concurrency=1,
        max_queued_jobs=3,
    )
    services = await ServiceFactory(settings).start(consume=True)
    try:
        first = await services.batches.create("t1", items(3), idempotency_key="k", request_hash="h")
        for _ in range(4):
            again = await services.batches.create(
                "t1", items(3), idempotency_key="k", request_hash="h"
            )
            assert again.id == first.id
        with pytest.raises(Overloaded):
            await services.batches.create("t1", items(3, "other"))
    finally:
        await services.close()
