"""The coalescing records (CoalescingStore), and coalescing over them, on every store.

`CoalescingContract` holds the tests; each `Test…` subclass says how to build its store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.coalescing import Coalescing
from shared.job_writes import JobWrites
from shared.models import (
    ChatRequest,
    Completion,
    Job,
    JobError,
    JobStatus,
    Message,
    Usage,
    utcnow,
)
from shared.ports import Store
from shared.transitions import JobOutcome
from tests.fakes import FakeJobQueue, FakeJobStore

REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])
ANSWER = Completion(
    content="hi", provider="gemini", model="m1", usage=Usage(input_tokens=3, output_tokens=5)
)


def lease() -> dict[str, Any]:
    now = utcnow()
    return {"lease_until": now + timedelta(minutes=1), "now": now}


async def claimed(store: Store, tenant: str = "t1", key: str = "k1") -> Job:
    job = await store.create_job(Job(tenant=tenant, request=REQUEST, cache_key=key))
    running = await JobWrites(store).claim(job.id, **lease())
    assert running is not None
    return running


class ReadBeforeTheEnd:
    """A store whose first look at the key (taking it while free, or reading its holder) and
    first read of `leader` see the leader still running."""

    def __init__(self, store: Store, leader: Job) -> None:
        self.store, self.leader = store, leader
        self.stale = {"take", "key", "leader"}

    async def take_key(
        self, tenant: str, cache_key: str, job_id: str, *, replacing: str | None
    ) -> bool:
        if replacing is None and "take" in self.stale:
            self.stale.discard("take")
            return False  # the leader held it then
        return await self.store.take_key(tenant, cache_key, job_id, replacing=replacing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def key_holder(self, tenant: str, cache_key: str) -> str | None:
        if "key" in self.stale:
            self.stale.discard("key")
            return self.leader.id
        return await self.store.key_holder(tenant, cache_key)

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        if job_id == self.leader.id and "leader" in self.stale:
            self.stale.discard("leader")
            return self.leader
        return await self.store.get_job(job_id, tenant)


class CoalescingContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    async def test_a_free_key_is_taken_once(self, store: Store) -> None:
        assert await store.key_holder("t1", "k1") is None
        assert await store.take_key("t1", "k1", "job_a", replacing=None)
        assert not await store.take_key("t1", "k1", "job_b", replacing=None)
        assert await store.key_holder("t1", "k1") == "job_a"

    async def test_a_held_key_changes_hands_only_from_the_holder_named(self, store: Store) -> None:
        await store.take_key("t1", "k1", "job_a", replacing=None)
        assert not await store.take_key("t1", "k1", "job_c", replacing="job_b")
        assert await store.take_key("t1", "k1", "job_b", replacing="job_a")
        assert await store.key_holder("t1", "k1") == "job_b"

    async def test_only_the_holder_releases_a_key(self, store: Store) -> None:
        await store.take_key("t1", "k1", "job_a", replacing=None)
        await store.release_key("t1", "k1", "job_b")
        assert await store.key_holder("t1", "k1") == "job_a"
        await store.release_key("t1", "k1", "job_a")
        assert await store.key_holder("t1", "k1") is None
        assert await store.take_key("t1", "k1", "job_c", replacing=None)

    async def test_keys_are_per_tenant(self, store: Store) -> None:
        assert await store.take_key("t1", "k1", "job_a", replacing=None)
        assert await store.take_key("t2", "k1", "job_b", replacing=None)
        assert await store.key_holder("t1", "k1") == "job_a"
        assert await store.key_holder("t2", "k1") == "job_b"

    async def test_of_many_takers_at_once_exactly_one_wins(self, store: Store) -> None:
        taken = await asyncio.gather(
            *(store.take_key("t1", "k1", f"job_{i}", replacing=None) for i in range(30))
        )
        assert taken.count(True) == 1
        assert await store.key_holder("t1", "k1") == f"job_{taken.index(True)}"

    async def test_followers_are_listed_per_leader_and_dropped(self, store: Store) -> None:
        await store.add_follower("job_a", "job_2")
        await store.add_follower("job_a", "job_1")
        await store.add_follower("job_a", "job_1")  # recorded again: still once
        await store.add_follower("job_b", "job_3")
        assert sorted(await store.followers("job_a")) == ["job_1", "job_2"]
        await store.drop_followers("job_a")
        assert await store.followers("job_a") == []
        assert await store.followers("job_b") == ["job_3"]

    async def test_jobs_claimed_at_once_share_one_leader_and_its_answer(self, store: Store) -> None:
        coalescing = Coalescing(store, None, FakeJobQueue())
        jobs = [await claimed(store) for _ in range(12)]
        joined = await asyncio.gather(*(coalescing.join(job) for job in jobs))
        (leader,) = [job for job, j in zip(jobs, joined, strict=True) if not j.waits]
        outcome = JobOutcome(JobStatus.succeeded, expect=JobStatus.running, result=ANSWER)
        done = await JobWrites(store).finish(leader.id, outcome)
        assert done is not None

        ended = await coalescing.leader_ended(done)

        assert len(ended) == 11 and await store.followers(leader.id) == []
        for job in jobs:
            stored = await store.get_job(job.id)
            assert stored is not None and stored.status is JobStatus.succeeded
            assert stored.result == ANSWER and stored.coalesced is (job.id != leader.id)
        (counters,) = await store.usage("t1", utcnow().date(), utcnow().date())
        assert (counters.requests, counters.coalesced, counters.llm_calls) == (12, 11, 1)
        assert (counters.input_tokens, counters.output_tokens) == (3, 5)  # counted once
        assert await store.key_holder("t1", "k1") is None

    async def test_another_tenants_identical_request_leads_its_own(self, store: Store) -> None:
        coalescing = Coalescing(store, None, FakeJobQueue())
        assert not (await coalescing.join(await claimed(store, "t1"))).waits
        assert not (await coalescing.join(await claimed(store, "t2"))).waits

    async def test_a_follower_that_joins_as_its_leader_ends_settles_itself(
        self, store: Store
    ) -> None:
        leader, follower = await claimed(store), await claimed(store)
        assert not (await Coalescing(store, None, FakeJobQueue()).join(leader)).waits
        failure = JobError(code="llm_rejected", message="blocked")
        outcome = JobOutcome(JobStatus.failed, expect=JobStatus.running, error=failure)
        done = await JobWrites(store).finish(leader.id, outcome)
        assert done is not None
        assert await Coalescing(store, None, FakeJobQueue()).leader_ended(done) == []
        # the follower read the key and its leader before the leader ended
        early = cast(Store, ReadBeforeTheEnd(store, leader))

        joined = await Coalescing(early, None, FakeJobQueue()).join(follower)

        assert joined.waits and joined.ended is not None and joined.ended.id == follower.id
        stored = await store.get_job(follower.id)
        assert stored is not None and stored.status is JobStatus.failed
        assert stored.error == failure and stored.coalesced
        assert await store.followers(leader.id) == []

    async def test_a_cancelled_leader_sends_its_followers_back_to_the_queue(
        self, store: Store
    ) -> None:
        queue = FakeJobQueue()
        coalescing = Coalescing(store, None, queue)
        leader, follower = await claimed(store), await claimed(store)
        await coalescing.join(leader)
        assert (await coalescing.join(follower)).waits
        note = JobError(code="retrying", message="later")
        await JobWrites(store).requeue(leader.id, attempt=1, note=note, not_before=None)
        cancel = JobOutcome(JobStatus.cancelled, expect=JobStatus.queued)
        cancelled = await JobWrites(store).finish(leader.id, cancel)
        assert cancelled is not None

        assert await coalescing.leader_ended(cancelled) == []

        stored = await store.get_job(follower.id)
        assert stored is not None and stored.status is JobStatus.queued
        assert stored.waiting_on is None and queue.pending == [follower.id]
        assert await JobWrites(store).claim(follower.id, **lease()) is not None


class TestFakeCoalescing(CoalescingContract):
    @pytest.fixture
    def store(self) -> Store:
        return FakeJobStore()


class TestSqliteCoalescing(CoalescingContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteJobStore(str(tmp_path / "chatjobs.db"))
        await store.start()
        yield store
        await store.close()

    async def test_a_file_from_before_coalescing_gains_its_usage_counter(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "old.db"
        old = sqlite3.connect(path)
        old.execute(
            "CREATE TABLE usage_counters (tenant TEXT NOT NULL, day TEXT NOT NULL,"
            " model TEXT NOT NULL, provider TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,"
            " failed_by_code TEXT NOT NULL DEFAULT '{}',"
            " PRIMARY KEY (tenant, day, model, provider))"
        )
        old.close()
        store = SqliteJobStore(str(path))
        await store.start()
        try:
            coalescing = Coalescing(store, None, FakeJobQueue())
            leader, follower = await claimed(store), await claimed(store)
            await coalescing.join(leader)
            await coalescing.join(follower)
            outcome = JobOutcome(JobStatus.succeeded, expect=JobStatus.running, result=ANSWER)
            done = await JobWrites(store).finish(leader.id, outcome)
            assert done is not None
            await coalescing.leader_ended(done)
            (counters,) = await store.usage("t1", utcnow().date(), utcnow().date())
            assert (counters.requests, counters.coalesced) == (2, 1)
        finally:
            await store.close()


@pytest.mark.integration
class TestDynamoDbCoalescing(CoalescingContract):
    @pytest.fixture
    async def store(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[Store]:
        store = DynamoDbJobStore(aws_clients, aws_layout.table)
        await store.start()
        yield store
        await store.close()
