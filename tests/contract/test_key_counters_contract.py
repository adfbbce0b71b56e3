"""The API keys' counters (KeyCounters), and a job's changes settling its key's hold, on every
store. `KeyCountersContract` holds the tests; each `Test…` subclass says how to build its store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.job_writes import JobWrites
from shared.key_usage import KEY_PROVIDER, KeyDeltas, keyed_tenant, minute_of, month_of
from shared.keys import KeyHold
from shared.models import (
    Batch,
    ChatRequest,
    Completion,
    Job,
    JobStatus,
    Message,
    Usage,
    utcnow,
)
from shared.ports import Store
from shared.transitions import JobOutcome
from tests.fakes import FakeJobStore

REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])
ANSWER = Completion(
    content="hi", provider="gemini", model="m1", usage=Usage(input_tokens=12, output_tokens=18)
)
MONTH = "2026-05"


def new_key() -> str:
    return f"key_{uuid.uuid4().hex[:12]}"


async def finish(store: Store, job: Job, answer: Completion | None = ANSWER) -> Job:
    """Claim the job and end it (succeeded with `answer`, or failed)."""
    now = utcnow()
    writes = JobWrites(store)
    running = await writes.claim(job.id, lease_until=now + timedelta(minutes=1), now=now)
    assert running is not None
    if answer is not None:
        outcome = JobOutcome(JobStatus.succeeded, expect=JobStatus.running, result=answer)
    else:
        outcome = JobOutcome(JobStatus.failed, expect=JobStatus.running)
    done = await writes.finish(job.id, outcome)
    assert done is not None
    return done


class KeyCountersContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    async def test_a_reservation_within_the_limit_counts(self, store: Store) -> None:
        key = new_key()
        month = await store.reserve(
            key, MONTH, requests=2, tokens=100, max_requests=5, max_tokens=1000
        )
        assert month is not None and (month.requests, month.tokens) == (2, 100)
        month = await store.reserve(
            key, MONTH, requests=3, tokens=900, max_requests=5, max_tokens=1000
        )
        assert month is not None and (month.requests, month.tokens) == (5, 1000)
        assert (await store.key_month(key, MONTH)).requests == 5

    async def test_a_reservation_that_would_pass_either_limit_adds_nothing(
        self, store: Store
    ) -> None:
        key = new_key()
        await store.reserve(key, MONTH, requests=4, tokens=0, max_requests=5, max_tokens=None)
        over_requests = await store.reserve(
            key, MONTH, requests=2, tokens=1, max_requests=5, max_tokens=None
        )
        over_tokens = await store.reserve(
            key, MONTH, requests=1, tokens=11, max_requests=5, max_tokens=10
        )
        too_big = await store.reserve(
            key, "2026-06", requests=6, tokens=0, max_requests=5, max_tokens=None
        )
        assert over_requests is None and over_tokens is None and too_big is None
        month = await store.key_month(key, MONTH)
        assert (month.requests, month.tokens) == (4, 0)
        assert (await store.key_month(key, "2026-06")).requests == 0

    async def test_no_maximum_means_no_limit(self, store: Store) -> None:
        key = new_key()
        for _ in range(3):
            assert await store.reserve(
                key, MONTH, requests=10**6, tokens=10**9, max_requests=None, max_tokens=None
            )
        assert (await store.key_month(key, MONTH)).requests == 3 * 10**6

    async def test_months_and_keys_count_apart(self, store: Store) -> None:
        a, b = new_key(), new_key()
        assert await store.reserve(a, MONTH, requests=1, tokens=0, max_requests=1, max_tokens=None)
        assert await store.reserve(
            a, "2026-06", requests=1, tokens=0, max_requests=1, max_tokens=None
        )
        assert await store.reserve(b, MONTH, requests=1, tokens=0, max_requests=1, max_tokens=None)

    async def test_unreserve_gives_a_reservation_back(self, store: Store) -> None:
        key = new_key()
        await store.reserve(key, MONTH, requests=3, tokens=30, max_requests=3, max_tokens=30)
        await store.unreserve(key, MONTH, requests=1, tokens=10)
        month = await store.reserve(
            key, MONTH, requests=1, tokens=10, max_requests=3, max_tokens=30
        )
        assert month is not None and (month.requests, month.tokens) == (3, 30)

    async def test_concurrent_reservations_against_a_small_limit_exactly_fill_it(
        self, store: Store
    ) -> None:
        key = new_key()
        taken = await asyncio.gather(
            *(
                store.reserve(key, MONTH, requests=1, tokens=7, max_requests=17, max_tokens=None)
                for _ in range(60)
            )
        )
        assert len([t for t in taken if t is not None]) == 17
        month = await store.key_month(key, MONTH)
        assert (month.requests, month.tokens) == (17, 17 * 7)

    async def test_concurrent_token_reservations_exactly_fill_the_budget(
        self, store: Store
    ) -> None:
        key = new_key()
        taken = await asyncio.gather(
            *(
                store.reserve(key, MONTH, requests=1, tokens=10, max_requests=None, max_tokens=95)
                for _ in range(40)
            )
        )
        assert len([t for t in taken if t is not None]) == 9
        assert (await store.key_month(key, MONTH)).tokens == 90

    async def test_in_flight_slots_have_a_ceiling(self, store: Store) -> None:
        key = new_key()
        assert await store.enter(key, 2, ceiling=3)
        assert not await store.enter(key, 2, ceiling=3)
        assert await store.enter(key, 1, ceiling=3)
        assert not await store.enter(key, 1, ceiling=3)
        await store.move_key_counters(KeyDeltas(key, in_flight=-2))
        assert await store.in_flight(key) == 1
        assert not await store.enter(key, 5, ceiling=3)
        assert await store.enter(key, 2, ceiling=3)

    async def test_concurrent_entries_exactly_fill_the_ceiling(self, store: Store) -> None:
        key = new_key()
        entered = await asyncio.gather(*(store.enter(key, 1, ceiling=5) for _ in range(40)))
        assert entered.count(True) == 5
        assert await store.in_flight(key) == 5

    async def test_tokens_count_per_minute_and_settle_per_month(self, store: Store) -> None:
        key = new_key()
        minute = minute_of(utcnow())  # DynamoDB hides a minute item an hour after its minute
        await store.reserve(key, MONTH, requests=1, tokens=100, max_requests=None, max_tokens=1000)
        await store.move_key_counters(KeyDeltas(key, months={MONTH: -70}, minutes={minute: 30}))
        await store.move_key_counters(KeyDeltas(key, minutes={minute: 5}))
        assert await store.minute_tokens(key, minute) == 35
        assert await store.minute_tokens(key, minute_of(utcnow() + timedelta(minutes=2))) == 0
        assert (await store.key_month(key, MONTH)).tokens == 30

    async def test_a_budget_event_is_marked_once_per_key_month_and_kind(self, store: Store) -> None:
        key = new_key()
        marks = await asyncio.gather(
            *(store.mark_alerted(key, MONTH, "requests") for _ in range(10))
        )
        assert marks.count(True) == 1
        assert await store.mark_alerted(key, MONTH, "tokens")
        assert await store.mark_alerted(key, "2026-06", "requests")
        assert (await store.key_month(key, MONTH)).alerted == {"requests", "tokens"}

    async def test_a_job_that_ends_frees_its_slot_and_settles_its_tokens(
        self, store: Store
    ) -> None:
        key, month = new_key(), month_of(utcnow())
        await store.reserve(key, month, requests=1, tokens=100, max_requests=None, max_tokens=1000)
        assert await store.enter(key, 1, ceiling=1)
        hold = KeyHold(month=month, tokens=100, slot=True, per_minute=True)
        job = await store.create_job(Job(tenant="t1", request=REQUEST, key_id=key, key_hold=hold))

        done = await finish(store, job)

        assert await store.in_flight(key) == 0
        assert (await store.key_month(key, month)).tokens == 30  # 12 + 18, not the 100 reserved
        assert done.completed_at is not None
        assert await store.minute_tokens(key, minute_of(done.completed_at)) == 30
        # the end is written once: a second finish finds the job ended and moves nothing
        again = JobOutcome(JobStatus.succeeded, expect=JobStatus.running, result=ANSWER)
        assert await JobWrites(store).finish(job.id, again) is None
        assert await store.in_flight(key) == 0

    async def test_a_failed_job_gives_back_its_whole_reservation(self, store: Store) -> None:
        key, month = new_key(), month_of(utcnow())
        await store.reserve(key, month, requests=1, tokens=50, max_requests=None, max_tokens=100)
        await store.enter(key, 1, ceiling=4)
        hold = KeyHold(month=month, tokens=50, slot=True)
        job = await store.create_job(Job(tenant="t1", request=REQUEST, key_id=key, key_hold=hold))
        await finish(store, job, answer=None)
        assert await store.in_flight(key) == 0
        month_figures = await store.key_month(key, month)
        assert (month_figures.requests, month_figures.tokens) == (1, 0)

    async def test_a_cancelled_batch_frees_every_slot_at_once(self, store: Store) -> None:
        key, month = new_key(), month_of(utcnow())
        await store.enter(key, 120, ceiling=120)
        await store.reserve(
            key, month, requests=120, tokens=1200, max_requests=None, max_tokens=None
        )
        batch = Batch(tenant="t1", key_id=key)
        hold = KeyHold(month=month, tokens=10, slot=True)
        jobs = [
            Job(tenant="t1", request=REQUEST, batch_id=batch.id, key_id=key, key_hold=hold)
            for _ in range(120)
        ]
        batch.counts.total = batch.counts.queued = len(jobs)
        await store.create_batch(batch, jobs)

        cancelled = await JobWrites(store).end_queued(batch.id, JobStatus.cancelled)

        assert cancelled == 120
        assert await store.in_flight(key) == 0
        assert (await store.key_month(key, month)).tokens == 0

    async def test_a_job_run_again_holds_no_slot_and_counts_its_new_tokens(
        self, store: Store
    ) -> None:
        key, month = new_key(), month_of(utcnow())
        await store.enter(key, 1, ceiling=1)
        batch = Batch(tenant="t1", key_id=key)
        hold = KeyHold(month=month, tokens=40, slot=True)
        job = Job(tenant="t1", request=REQUEST, batch_id=batch.id, key_id=key, key_hold=hold)
        batch.counts.total = batch.counts.queued = 1
        await store.create_batch(batch, [job])
        await store.reserve(key, month, requests=1, tokens=40, max_requests=None, max_tokens=None)
        await finish(store, job, answer=None)
        assert await JobWrites(store).retry_failed(batch.id) == [job.id]
        assert await store.in_flight(key) == 0

        await finish(store, job)

        assert await store.in_flight(key) == 0
        assert (await store.key_month(key, month)).tokens == 30

    async def test_a_keyed_job_counts_in_its_key_usage_row_too(self, store: Store) -> None:
        key = new_key()
        job = await store.create_job(Job(tenant="t1", request=REQUEST, key_id=key))
        await finish(store, job)
        plain = await store.create_job(Job(tenant="t1", request=REQUEST))
        await finish(store, plain)
        today = date.today()
        start, end = today - timedelta(days=1), today + timedelta(days=1)

        rows = await store.usage(keyed_tenant("t1"), start, end)

        assert [(r.model, r.provider, r.requests, r.input_tokens) for r in rows] == [
            (key, KEY_PROVIDER, 1, 12)
        ]
        tenant_rows = await store.usage("t1", start, end)
        assert sum(r.requests for r in tenant_rows) == 2


class TestFakeKeyCounters(KeyCountersContract):
    @pytest.fixture
    def store(self) -> Store:
        return FakeJobStore()


class TestSqliteKeyCounters(KeyCountersContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteJobStore(str(tmp_path / "chatjobs.db"))
        await store.start()
        yield store
        await store.close()


class TestDynamoDbKeyCounters(KeyCountersContract):
    @pytest.fixture
    async def store(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[Store]:
        store = DynamoDbJobStore(aws_clients, aws_layout.table)
        await store.start()
        yield store
        await store.close()
