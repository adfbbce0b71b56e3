"""ChatService with fakes at every port: state is asserted, not calls."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import Conflict, NotFound, QueueUnavailable
from shared.job_writes import JobWrites
from shared.models import ChatRequest, Completion, JobCreate, JobStatus, Message
from shared.service import ChatService, body_hash, cache_key
from shared.transitions import JobOutcome
from tests.fakes import FakeJobQueue, FakeJobStore, FakeResultCache


def body(prompt: str = "hello", **extra: object) -> JobCreate:
    return JobCreate.model_validate({"messages": [{"role": "user", "content": prompt}], **extra})


Parts = tuple[ChatService, FakeJobStore, FakeResultCache, FakeJobQueue]


@pytest.fixture
def parts() -> Parts:
    store, cache, queue = FakeJobStore(), FakeResultCache(), FakeJobQueue()
    return ChatService(store, cache, queue), store, cache, queue


async def test_submit_stores_then_enqueues(parts: Parts) -> None:
    chat, store, _, queue = parts
    job = await chat.submit("t1", body())
    assert job.status is JobStatus.queued
    assert store.jobs[job.id].tenant == "t1"
    assert queue.pending == [job.id]


async def test_cache_hit_is_recorded_as_a_succeeded_job(parts: Parts) -> None:
    chat, store, cache, queue = parts
    request = body().chat_request()
    cache.entries[cache_key("t1", request)] = Completion(content="hi", provider="p", model="m")
    job = await chat.submit("t1", body())
    assert job.cached and job.status is JobStatus.succeeded and job.result is not None
    assert store.jobs[job.id].completed_at is not None
    assert queue.pending == []


async def test_cache_is_scoped_per_tenant_and_skippable(parts: Parts) -> None:
    chat, _, cache, _ = parts
    cache.entries[cache_key("t1", body().chat_request())] = Completion(
        content="hi", provider="p", model="m"
    )
    assert not (await chat.submit("t2", body())).cached
    assert not (await chat.submit("t1", body(cache=False))).cached


def test_cache_key_changes_with_everything_that_changes_the_answer() -> None:
    base = ChatRequest(messages=[Message(role="user", content="x")])
    variants = [
        base.model_copy(update={"model": "gemini-2.5-pro"}),
        base.model_copy(update={"temperature": 0.5}),
        base.model_copy(update={"max_tokens": 10}),
        ChatRequest(messages=[Message(role="user", content="y")]),
    ]
    keys = {cache_key("t", base), *(cache_key("t", v) for v in variants)}
    assert len(keys) == 5
    assert cache_key("t", base) == cache_key("t", base.model_copy())


GENERATION_VARIANTS: list[dict[str, Any]] = [
    {"top_p": 0.5},
    {"top_p": 0.6},
    {"stop": ["END"]},
    {"stop": ["END", "STOP"]},
    {"seed": 1},
    {"seed": 2},
    {"response_format": {"type": "text"}},
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "b", "schema": {}}}},
]


def test_each_generation_parameter_changes_the_key() -> None:
    def request(**options: object) -> ChatRequest:
        return ChatRequest.model_validate(
            {"messages": [{"role": "user", "content": "x"}]} | options
        )

    keys = [cache_key("t", request(**v)) for v in [{}, *GENERATION_VARIANTS]]
    assert len(set(keys)) == len(keys)
    assert cache_key("t", request(stop="END")) == cache_key("t", request(stop=["END"]))


def test_requests_without_the_new_parameters_keep_their_keys() -> None:
    """Keys made before top_p, stop, seed and response_format existed still hit (and an
    Idempotency-Key replay of an older body still matches): the digests below were computed
    before those fields were added."""
    plain = ChatRequest(messages=[Message(role="user", content="pinned")])
    tuned = plain.model_copy(
        update={"model": "gemini-2.5-flash", "temperature": 0.5, "max_tokens": 10}
    )
    assert cache_key("t1", plain) == (
        "e37f2dbf724c1a7ede53ce106291d97e915724f9ddeae29d21916a9328eeb903"
    )
    assert cache_key("t1", tuned) == (
        "c0f4333d52095adc4b3bc01fbd538fb83188e84a2a5d8eaa3da27ebd0825fae8"
    )
    assert body_hash(body("pinned", metadata={"a": "b"})) == (
        "894615418036a7930b6b2a5f2d7d41473045b33934ca1e29b945c075dfd40bbf"
    )


async def test_refused_enqueue_fails_the_job_and_raises(parts: Parts) -> None:
    chat, store, _, queue = parts
    queue.refuse = True
    with pytest.raises(QueueUnavailable):
        await chat.submit("t1", body())
    (job,) = store.jobs.values()
    assert job.status is JobStatus.failed
    assert job.error is not None and job.error.code == "queue_unavailable"


async def test_idempotency_key_replays_and_detects_other_bodies(parts: Parts) -> None:
    chat, store, _, queue = parts
    first = await chat.submit("t1", body(), idempotency_key="k")
    again = await chat.submit("t1", body(), idempotency_key="k")
    assert again.id == first.id and len(store.jobs) == 1 and queue.pending == [first.id]
    with pytest.raises(Conflict):
        await chat.submit("t1", body("other"), idempotency_key="k")
    other_tenant = await chat.submit("t2", body(), idempotency_key="k")
    assert other_tenant.id != first.id


async def test_get_hides_other_tenants_jobs(parts: Parts) -> None:
    chat, *_ = parts
    job = await chat.submit("t1", body())
    assert (await chat.get("t1", job.id)).id == job.id
    with pytest.raises(NotFound):
        await chat.get("t2", job.id)


async def test_wait_returns_when_time_is_up(parts: Parts) -> None:
    chat, *_ = parts
    job = await chat.submit("t1", body())
    waited = await chat.get("t1", job.id, wait_s=0.2)
    assert waited.status is JobStatus.queued


async def test_wait_returns_as_soon_as_the_job_ends(parts: Parts) -> None:
    import asyncio

    chat, store, *_ = parts
    job = await chat.submit("t1", body())

    async def finish_later() -> None:
        await asyncio.sleep(0.1)
        await JobWrites(store).finish(
            job.id, JobOutcome(JobStatus.cancelled, expect=JobStatus.queued)
        )

    finisher = asyncio.create_task(finish_later())
    waited = await chat.get("t1", job.id, wait_s=10)
    await finisher
    assert waited.status is JobStatus.cancelled


async def test_cancel_only_while_queued(parts: Parts) -> None:
    chat, *_ = parts
    job = await chat.submit("t1", body())
    cancelled = await chat.cancel("t1", job.id)
    assert cancelled.status is JobStatus.cancelled and cancelled.completed_at is not None
    with pytest.raises(Conflict, match="cancelled"):
        await chat.cancel("t1", job.id)
    with pytest.raises(NotFound):
        await chat.cancel("t2", job.id)
