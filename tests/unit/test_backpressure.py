"""Backpressure: MAX_QUEUED_JOBS refuses new queued work with 503 + Retry-After, and in-process
workers let submits in only as fast as they take jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared import admission
from shared.adapters.queue.inprocess import InProcessJobQueue
from shared.admission import Admission
from shared.errors import Overloaded
from shared.lanes import Lane
from shared.models import ChatRequest, Completion, Message
from shared.service import cache_key
from tests.fakes import FakeJobStore
from tests.unit.conftest import T1, chat, running_api


def item(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, **chat(f"prompt {custom_id}")}


async def test_submits_past_max_queued_jobs_answer_503_with_retry_after() -> None:
    async with running_api(max_queued_jobs=2) as api:
        for n in range(2):
            assert (await api.submit(chat(f"queued {n}"))).status_code == 202
        refused = await api.submit(chat("one too many"))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
        assert len(api.store.jobs) == 2 and len(api.queue.pending) == 2  # nothing left behind


async def test_a_cache_hit_is_answered_even_when_the_backlog_is_full() -> None:
    async with running_api(max_queued_jobs=1) as api:
        request = ChatRequest(messages=[Message(role="user", content="known")])
        answer = Completion(content="cached answer", provider="fake", model="m")
        api.cache.entries[cache_key("t1", request)] = answer
        assert (await api.submit(chat("fills the backlog"))).status_code == 202
        hit = await api.submit(chat("known"))
        assert hit.status_code == 200 and hit.json()["cached"] is True


async def test_a_batch_that_would_pass_the_limit_is_refused_whole() -> None:
    async with running_api(max_queued_jobs=3) as api:
        assert (await api.submit(chat("one"))).status_code == 202
        body = {"requests": [item("a"), item("b"), item("c")]}
        refused = await api.client.post("/v1/batches", json=body, headers=T1)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "overloaded" and "retry-after" in refused.headers
        assert api.store.batches == {} and len(api.store.jobs) == 1
        fits = await api.client.post("/v1/batches", json={"requests": [item("a")]}, headers=T1)
        assert fits.status_code == 202


async def test_zero_means_no_limit() -> None:
    async with running_api(max_queued_jobs=0) as api:
        for n in range(5):
            assert (await api.submit(chat(f"unlimited {n}"))).status_code == 202


async def test_the_503_is_documented_with_its_code_and_retry_after() -> None:
    async with running_api() as api:
        document = (await api.client.get("/openapi.json")).json()
    for path in ("/v1/jobs", "/v1/batches"):
        refused = document["paths"][path]["post"]["responses"]["503"]
        assert "overloaded" in refused["description"] and "Retry-After" in refused["headers"]
    codes = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    assert "overloaded" in codes


async def test_in_process_submits_wait_for_a_worker_to_take_a_job() -> None:
    queue = InProcessJobQueue(concurrency=1)  # started without a handler: nothing takes jobs
    await queue.start()
    for n in range(3):
        await queue.enqueue(f"job_{n}")
    assert await queue.wait_below(3, timeout_s=0.05) is False  # full, and nobody takes any
    waiting = asyncio.create_task(queue.wait_below(3, timeout_s=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    queue._take()  # what a worker does
    assert await asyncio.wait_for(waiting, 1) is True
    await queue.close()


async def test_one_tenants_backlog_does_not_turn_others_away() -> None:
    """Embedded: only the jobs that would run first count: a higher priority's, and the
    submitter's own at its priority (other tenants' take turns with it)."""
    queue = InProcessJobQueue(concurrency=1)  # nothing takes jobs
    await queue.start()
    await queue.enqueue_many([f"a{n}" for n in range(10)], "big", Lane("low", "A"))
    await queue.enqueue_many([f"n{n}" for n in range(3)], "mid", Lane("normal", "A"))
    assert await queue.wait_below(5, timeout_s=0, lane=Lane("low", "A")) is False  # 3 + 10
    assert await queue.wait_below(5, timeout_s=0, lane=Lane("low", "B")) is True  # 3 ahead
    assert await queue.wait_below(3, timeout_s=0, lane=Lane("low", "B")) is False
    assert await queue.wait_below(1, timeout_s=0, lane=Lane("normal", "B")) is True
    assert await queue.wait_below(1, timeout_s=0, lane=Lane("high", "A")) is True
    assert await queue.wait_below(5, timeout_s=0) is False  # no lane: every waiting job
    waiting = asyncio.create_task(queue.wait_below(3, timeout_s=5, lane=Lane("normal", "A")))
    behind = asyncio.create_task(queue.wait_below(12, timeout_s=5, lane=Lane("low", "A")))
    await asyncio.sleep(0.01)
    queue._take()  # "n0": A's normal jobs drop to 2, and the first waiter that fits goes in
    assert await asyncio.wait_for(waiting, 1) is True
    assert not behind.done()  # 2 + 10 ahead of it, not below 12
    queue._take()
    assert await asyncio.wait_for(behind, 1) is True
    await queue.close()


async def test_a_tenant_is_admitted_beside_another_tenants_full_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "LOCAL_WAIT_S", 0.05)
    queue = InProcessJobQueue(concurrency=1)  # 50 waiting jobs a slot, and nothing takes any
    await queue.start()
    gate = Admission(FakeJobStore(), 0, queue)
    await queue.enqueue_many([f"a{n}" for n in range(60)], "big", Lane("normal", "A"))
    with pytest.raises(Overloaded):
        await gate.admit(1, Lane("normal", "A"))
    await gate.admit(1, Lane("normal", "B"))
    await gate.admit(1, Lane("high", "A"))
    with pytest.raises(Overloaded):
        await gate.admit(1, Lane("low", "B"))
    await queue.close()


@pytest.mark.parametrize("waiting", [0, 49])
async def test_below_the_high_water_mark_submits_do_not_wait(waiting: int) -> None:
    queue = InProcessJobQueue(concurrency=1)
    await queue.start()
    for n in range(waiting):
        await queue.enqueue(f"job_{n}")
    assert await queue.wait_below(50, timeout_s=0) is True
    await queue.close()


async def test_a_replayed_batch_is_answered_while_the_backlog_is_full() -> None:
    """A replay is a read: the batch its Idempotency-Key made is answered, never refused for
    backpressure; a new batch is."""
    async with running_api(max_queued_jobs=1) as api:
        keyed = {**T1, "Idempotency-Key": "nightly-1"}
        body = {"requests": [item("a")]}
        first = await api.client.post("/v1/batches", json=body, headers=keyed)
        assert first.status_code == 202, first.text
        again = await api.client.post("/v1/batches", json=body, headers=keyed)
        assert again.status_code == 202, again.text
        assert again.json()["id"] == first.json()["id"]
        other = await api.client.post("/v1/batches", json={"requests": [item("b")]}, headers=T1)
        assert other.status_code == 503 and other.json()["error"]["code"] == "overloaded"
        assert len(api.store.batches) == 1


async def test_a_replayed_job_is_answered_while_the_backlog_is_full() -> None:
    async with running_api(max_queued_jobs=1) as api:
        keyed = {**T1, "Idempotency-Key": "job-1"}
        first = await api.submit(chat("once"), headers=keyed)
        assert first.status_code == 202, first.text
        again = await api.submit(chat("once"), headers=keyed)
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        assert (await api.submit(chat("new"))).status_code == 503
        conflict = await api.submit(chat("another body"), headers=keyed)
        assert conflict.status_code == 409  # the key's body is compared before any admission
        assert len(api.store.jobs) == 1
