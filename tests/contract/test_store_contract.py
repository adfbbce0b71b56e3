"""The Store contract, run against the in-memory fake and every real adapter.

`JobStoreContract` holds the tests; each `Test…` subclass only says how to build its store.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.store.sqlite import SqliteJobStore
from shared.adapters.store.sqlite_purge import EXPIRED_BATCH_KEYS, EXPIRED_BATCHES, EXPIRED_JOBS
from shared.adapters.store.sqlite_queries import COUNT_UNFINISHED, batch_list_query, encode_cursor
from shared.adapters.store.sqlite_schema import ts
from shared.errors import InvalidCursor
from shared.job_writes import JobWrites
from shared.lanes import Lane
from shared.models import (
    Batch,
    BatchCounts,
    BatchStatus,
    ChatRequest,
    Completion,
    Job,
    JobError,
    JobStatus,
    Message,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.ports import JobRef, Store
from shared.transitions import LEASE_EXPIRED, AttemptFailure, Ended, JobOutcome
from tests.fakes import FakeJobStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # whole second: microsecond 0 must still sort first
RETENTION = timedelta(days=30)  # every store of the suite keeps ended records this long
REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])


def make_job(tenant: str = "t1", **fields: Any) -> Job:
    return Job(tenant=tenant, request=REQUEST, **fields)


def make_batch(n: int, tenant: str = "t1", cached: int = 0) -> tuple[Batch, list[Job]]:
    batch = Batch(tenant=tenant, metadata={"run": "nightly"})
    jobs = [
        make_job(tenant, batch_id=batch.id, custom_id=f"r{i}", created_at=T0 + timedelta(seconds=i))
        for i in range(n)
    ]
    for i in range(cached):
        jobs[i] = jobs[i].model_copy(update={"status": JobStatus.succeeded, "cached": True})
    batch.counts = BatchCounts(total=n, queued=n - cached, succeeded=cached)
    return batch, jobs


async def all_pages(store: Store, tenant: str = "t1", **filters: Any) -> list[Job]:
    seen: list[Job] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_jobs(tenant, cursor=cursor, **filters)
        seen.extend(page)
        if cursor is None:
            return seen


async def all_batch_pages(
    store: Store, tenant: str = "t1", *, limit: int = 20, cursor: str | None = None
) -> list[Batch]:
    seen: list[Batch] = []
    while True:
        page, cursor = await store.list_batches(tenant, limit=limit, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            return seen


def ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


def cancel(job_id: str) -> tuple[str, JobOutcome]:
    return job_id, JobOutcome(JobStatus.cancelled, expect=JobStatus.queued)


BUSY = AttemptFailure(code="http_503", message="gemini: HTTP 503", provider="gemini")
TIMED_OUT = AttemptFailure(code="timeout", message="the LLM call timed out")


def history(job: Job) -> list[tuple[object, ...]]:
    """A job's attempt log as plain values, to compare across stores."""
    return [
        (r.attempt, r.outcome.value, r.started_at, r.ended_at, r.provider, r.code, r.message)
        for r in job.attempt_log
    ]


def lease(minutes: float = 1) -> dict[str, datetime]:
    now = utcnow()
    return {"lease_until": now + timedelta(minutes=minutes), "now": now}


class JobStoreContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    # jobs: create, get, idempotency

    async def test_created_job_reads_back_equal(self, store: Store) -> None:
        job = make_job(
            metadata={"k": "v"},
            result=Completion(content="hi", provider="p", model="m", latency_ms=3),
            lease_until=T0 + timedelta(microseconds=1),
            webhook_url="https://example.com/hook",
        )
        assert await store.create_job(job) == job
        assert await store.get_job(job.id) == job

    async def test_get_job_is_scoped_to_the_tenant(self, store: Store) -> None:
        job = await store.create_job(make_job("t1"))
        assert await store.get_job(job.id, "t1") == job
        assert await store.get_job(job.id, "t2") is None
        assert await store.get_job("job_missing") is None

    async def test_idempotency_key_within_a_day_returns_the_earlier_job(self, store: Store) -> None:
        first = await store.create_job(make_job(idempotency_key="k1"))
        again = await store.create_job(make_job(idempotency_key="k1"))
        other_tenant = await store.create_job(make_job("t2", idempotency_key="k1"))
        assert again == first
        assert other_tenant.id != first.id
        assert ids(await all_pages(store)) == [first.id]

    async def test_idempotency_key_older_than_a_day_no_longer_blocks(self, store: Store) -> None:
        old = await store.create_job(
            make_job(idempotency_key="k1", created_at=utcnow() - timedelta(hours=25))
        )
        fresh = make_job(idempotency_key="k1")
        assert await store.create_job(fresh) == fresh
        assert await store.create_job(make_job(idempotency_key="k1")) == fresh
        assert await store.get_job(old.id) is not None

    async def test_find_idempotent_names_what_a_key_made_within_a_day(self, store: Store) -> None:
        job = await store.create_job(make_job(idempotency_key="k1"))
        batch, jobs = make_batch(1)
        batch.idempotency_key = "k1"
        await store.create_batch(batch, jobs)
        assert await store.find_idempotent("job", "t1", "k1") == job.id
        assert await store.find_idempotent("batch", "t1", "k1") == batch.id
        assert await store.find_idempotent("job", "t2", "k1") is None
        assert await store.find_idempotent("job", "t1", "k2") is None
        assert await store.find_idempotent("batch", "t1", "k2") is None

    async def test_find_idempotent_forgets_old_and_released_keys(self, store: Store) -> None:
        await store.create_job(
            make_job(idempotency_key="old", created_at=utcnow() - timedelta(hours=25))
        )
        assert await store.find_idempotent("job", "t1", "old") is None
        job = await store.create_job(make_job(idempotency_key="k1"))
        refused = JobOutcome(
            JobStatus.failed, expect=JobStatus.queued, release_idempotency_key=True
        )
        assert await JobWrites(store).finish(job.id, refused) is not None
        assert await store.find_idempotent("job", "t1", "k1") is None

    async def test_concurrent_creates_with_one_key_store_one_job(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.create_job(make_job(idempotency_key="k1")) for _ in range(10))
        )
        assert len({job.id for job in results}) == 1
        assert len(await all_pages(store)) == 1

    # erasing

    async def test_delete_job_erases_an_ended_job_and_its_key(self, store: Store) -> None:
        job = await store.create_job(ended_job(utcnow(), idempotency_key="k1"))
        other = await store.create_job(make_job())
        days = (utcnow().date(), utcnow().date())
        usage = await store.usage("t1", *days)
        assert await store.delete_job(job.id, "t2", expect=JobStatus.succeeded) is False
        assert await store.delete_job(job.id, "t1", expect=JobStatus.failed) is False
        assert await store.get_job(job.id) == job
        assert await store.delete_job(job.id, "t1", expect=JobStatus.succeeded) is True
        assert await store.get_job(job.id) is None
        assert ids(await all_pages(store)) == [other.id]
        assert await store.delete_job(job.id, "t1", expect=JobStatus.succeeded) is False
        assert await store.usage("t1", *days) == usage != []
        assert await store.find_idempotent("job", "t1", "k1") is None
        fresh = make_job(idempotency_key="k1")
        assert await store.create_job(fresh) == fresh  # the key went with the job

    async def test_delete_job_is_compare_and_set_on_the_status(self, store: Store) -> None:
        batch, jobs = make_batch(2)
        await store.create_batch(batch, jobs)
        failed = JobOutcome(JobStatus.failed, expect=JobStatus.queued)
        await JobWrites(store).finish(jobs[0].id, failed)
        await JobWrites(store).retry_failed(batch.id)  # queued again since it was read
        assert await store.delete_job(jobs[0].id, "t1", expect=JobStatus.failed) is False
        assert await store.get_job(jobs[0].id) is not None
        await JobWrites(store).finish(jobs[1].id, failed)
        assert await store.delete_job(jobs[1].id, "t1", expect=JobStatus.failed) is True
        stored = await store.get_batch(batch.id)
        assert stored is not None and stored.counts == BatchCounts(total=2, queued=1, failed=1)

    # listing

    async def test_list_is_newest_first_across_pages(self, store: Store) -> None:
        jobs = [
            await store.create_job(make_job(created_at=T0 + timedelta(seconds=i))) for i in range(7)
        ]
        first, cursor = await store.list_jobs("t1", limit=3)
        assert ids(first) == ids(jobs[::-1][:3])
        assert cursor is not None
        assert ids(await all_pages(store, limit=3)) == ids(jobs[::-1])

    async def test_sub_second_created_at_orders_correctly(self, store: Store) -> None:
        offsets = [timedelta(0), timedelta(microseconds=1), timedelta(milliseconds=500)]
        jobs = [await store.create_job(make_job(created_at=T0 + d)) for d in offsets]
        eastern = timezone(timedelta(hours=5))
        later = await store.create_job(
            make_job(created_at=(T0 + timedelta(seconds=1)).astimezone(eastern))
        )
        assert ids(await all_pages(store, limit=2)) == [later.id, *ids(jobs[::-1])]

    async def test_equal_created_at_pages_by_id_without_gaps(self, store: Store) -> None:
        jobs = [await store.create_job(make_job(created_at=T0)) for _ in range(10)]
        listed = await all_pages(store, limit=3)
        assert ids(listed) == sorted(ids(jobs), reverse=True)

    async def test_last_page_has_no_cursor(self, store: Store) -> None:
        for i in range(6):
            await store.create_job(make_job(created_at=T0 + timedelta(seconds=i)))
        _, cursor = await store.list_jobs("t1", limit=3)
        assert cursor is not None
        second, end = await store.list_jobs("t1", limit=3, cursor=cursor)
        assert (len(second), end) == (3, None)
        assert (await store.list_jobs("t1", limit=10))[1] is None
        assert await store.list_jobs("nobody") == ([], None)

    async def test_list_filters_by_tenant_status_and_batch(self, store: Store) -> None:
        batch, batch_jobs = make_batch(2)
        await store.create_batch(batch, batch_jobs)
        done = await store.create_job(make_job(status=JobStatus.succeeded))
        await store.create_job(make_job("t2"))
        assert ids(await all_pages(store, status=JobStatus.succeeded)) == [done.id]
        assert ids(await all_pages(store, batch_id=batch.id)) == ids(batch_jobs[::-1])
        assert ids(await all_pages(store, "t2", batch_id=batch.id)) == []
        assert len(await all_pages(store)) == 3

    async def test_oldest_first_listing_across_pages(self, store: Store) -> None:
        batch, jobs = make_batch(7)
        await store.create_batch(batch, jobs)
        pages = await all_pages(store, batch_id=batch.id, limit=2, oldest_first=True)
        assert ids(pages) == ids(jobs)

    async def test_cursor_does_not_repeat_rows_after_newer_inserts(self, store: Store) -> None:
        jobs = [
            await store.create_job(make_job(created_at=T0 + timedelta(seconds=i))) for i in range(6)
        ]
        first, cursor = await store.list_jobs("t1", limit=3)
        await store.create_job(make_job(created_at=T0 + timedelta(hours=1)))
        second, _ = await store.list_jobs("t1", limit=3, cursor=cursor)
        assert ids(first + second) == ids(jobs[::-1])

    async def test_cursor_skips_nothing_while_listed_rows_change_status(self, store: Store) -> None:
        batch, jobs = make_batch(7)
        await store.create_batch(batch, jobs)
        visited: list[str] = []
        cursor: str | None = None
        while True:  # what cancelling a batch does: page through queued jobs, cancelling each
            page, cursor = await store.list_jobs(
                "t1",
                batch_id=batch.id,
                status=JobStatus.queued,
                limit=2,
                cursor=cursor,
                oldest_first=True,
            )
            for job in page:
                visited.append(job.id)
                await JobWrites(store).finish(*cancel(job.id))
            if cursor is None:
                break
        assert visited == ids(jobs)

    @pytest.mark.parametrize(
        "cursor",
        ["not base64!", base64.urlsafe_b64encode(b"\xff\xfe").decode(), "W10=", "bm9wZQ=="],
    )
    async def test_foreign_cursor_is_invalid(self, store: Store, cursor: str) -> None:
        await store.create_job(make_job())
        with pytest.raises(InvalidCursor):
            await store.list_jobs("t1", cursor=cursor)

    async def test_limit_below_one_is_a_value_error(self, store: Store) -> None:
        with pytest.raises(ValueError):
            await store.list_jobs("t1", limit=0)

    # batch listing

    async def test_batches_list_newest_first_across_pages(self, store: Store) -> None:
        made = []
        for i in range(7):
            batch, jobs = make_batch(1)
            batch.created_at = T0 + timedelta(seconds=i)
            made.append(await store.create_batch(batch, jobs))
        other, other_jobs = make_batch(1, tenant="t2")
        await store.create_batch(other, other_jobs)
        first, _ = await store.list_batches("t1", limit=3)
        assert [b.id for b in first] == [b.id for b in made[::-1][:3]]
        assert first[0] == made[-1]  # the whole record, counts included
        listed = await all_batch_pages(store, limit=3)
        assert [b.id for b in listed] == [b.id for b in made[::-1]]
        assert [b.id for b in await all_batch_pages(store, "t2")] == [other.id]
        assert await store.list_batches("nobody") == ([], None)
        assert (await store.list_batches("t1", limit=7))[1] is None

    async def test_batch_pages_hold_still_while_batches_are_added(self, store: Store) -> None:
        made = []
        for i in range(6):  # equal created_at: the id breaks the tie
            batch, jobs = make_batch(1)
            batch.created_at = T0 + timedelta(seconds=i // 2)
            made.append(await store.create_batch(batch, jobs))
        first, cursor = await store.list_batches("t1", limit=3)
        newer, newer_jobs = make_batch(1)
        await store.create_batch(newer, newer_jobs)
        rest = await all_batch_pages(store, limit=3, cursor=cursor)
        in_order = sorted(made, key=lambda b: (b.created_at, b.id), reverse=True)
        assert [b.id for b in first + rest] == [b.id for b in in_order]

    @pytest.mark.parametrize("cursor", ["not base64!", "W10=", "bm9wZQ=="])
    async def test_foreign_batch_cursor_is_invalid(self, store: Store, cursor: str) -> None:
        with pytest.raises(InvalidCursor):
            await store.list_batches("t1", cursor=cursor)
        with pytest.raises(ValueError):
            await store.list_batches("t1", limit=0)

    # transitions and claims

    async def test_finish_is_compare_and_set(self, store: Store) -> None:
        job = await store.create_job(make_job(created_at=T0, updated_at=T0))
        claimed = await JobWrites(store).claim(job.id, **lease())
        assert claimed is not None
        result = Completion(content="ok", provider="p", model="m")
        hook = WebhookDelivery(id="msg_1", next_attempt_at=T0)
        outcome = JobOutcome(
            JobStatus.succeeded, expect=JobStatus.running, result=result, webhook=hook
        )
        done = await JobWrites(store).finish(job.id, outcome)
        assert done is not None
        assert (done.status, done.result, done.webhook) == (JobStatus.succeeded, result, hook)
        assert done.completed_at is not None and done.updated_at > T0
        assert done.lease_until is None
        assert await store.get_job(job.id) == done
        assert await JobWrites(store).finish(*cancel(job.id)) is None
        assert await store.get_job(job.id) == done
        assert await JobWrites(store).finish(*cancel("job_missing")) is None

    async def test_cancel_clears_the_retry_note(self, store: Store) -> None:
        note = JobError(code="retrying", message="x")
        job = await store.create_job(make_job(error=note))
        cancelled = await JobWrites(store).finish(*cancel(job.id))
        assert cancelled is not None
        assert (cancelled.status, cancelled.error) == (JobStatus.cancelled, None)

    async def test_finish_can_release_the_idempotency_key(self, store: Store) -> None:
        job = await store.create_job(make_job(idempotency_key="k1"))
        refused = JobOutcome(
            JobStatus.failed,
            expect=JobStatus.queued,
            error=JobError(code="queue_unavailable", message="refused"),
            release_idempotency_key=True,
        )
        failed = await JobWrites(store).finish(job.id, refused)
        assert failed is not None and failed.idempotency_key is None
        retried = make_job(idempotency_key="k1")
        assert await store.create_job(retried) == retried

    async def test_requeue_notes_why_and_when(self, store: Store) -> None:
        job = await store.create_job(make_job())
        claimed = await JobWrites(store).claim(job.id, **lease())
        assert claimed is not None
        note = JobError(code="retrying", message="provider down")
        later = utcnow() + timedelta(minutes=5)
        queued = await JobWrites(store).requeue(job.id, attempt=1, note=note, not_before=later)
        assert queued is not None
        assert (queued.status, queued.error, queued.not_before) == (JobStatus.queued, note, later)
        assert queued.lease_until is None
        assert await store.get_job(job.id) == queued
        assert await JobWrites(store).requeue(job.id, attempt=1, note=note, not_before=None) is None

    async def test_claim_waits_for_not_before(self, store: Store) -> None:
        job = await store.create_job(make_job())
        assert await JobWrites(store).claim(job.id, **lease()) is not None
        later = utcnow() + timedelta(seconds=30)
        note = JobError(code="retrying", message="x")
        await JobWrites(store).requeue(job.id, attempt=1, note=note, not_before=later)
        assert await JobWrites(store).claim(job.id, **lease()) is None
        after = later + timedelta(microseconds=1)
        again = await JobWrites(store).claim(
            job.id, lease_until=after + timedelta(minutes=1), now=after
        )
        assert again is not None and again.attempts == 2

    async def test_finish_fenced_by_attempts(self, store: Store) -> None:
        job = await store.create_job(make_job())
        now = utcnow()
        first = await JobWrites(store).claim(
            job.id, lease_until=now - timedelta(seconds=1), now=now
        )
        second = await JobWrites(store).claim(
            job.id, **lease()
        )  # another worker, the lease was over
        assert first is not None and second is not None and second.attempts == 2

        def succeeded(attempt: int) -> JobOutcome:
            return JobOutcome(JobStatus.succeeded, expect=JobStatus.running, attempt=attempt)

        assert await JobWrites(store).finish(job.id, succeeded(first.attempts)) is None
        note = JobError(code="retrying", message="x")
        assert await JobWrites(store).requeue(job.id, attempt=1, note=note, not_before=None) is None
        current = await JobWrites(store).finish(job.id, succeeded(second.attempts))
        assert current is not None and current.status is JobStatus.succeeded

    async def test_concurrent_finishes_have_one_winner(self, store: Store) -> None:
        job = await store.create_job(make_job())
        ends: list[Ended] = [JobStatus.cancelled, JobStatus.failed] * 5
        results = await asyncio.gather(
            *(
                JobWrites(store).finish(job.id, JobOutcome(end, expect=JobStatus.queued))
                for end in ends
            )
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert await store.get_job(job.id) == winners[0]

    async def test_claim_takes_queued_jobs_and_expired_leases_only(self, store: Store) -> None:
        job = await store.create_job(make_job())
        now = utcnow()
        claimed = await JobWrites(store).claim(
            job.id, lease_until=now + timedelta(minutes=1), now=now
        )
        assert claimed is not None
        assert (claimed.status, claimed.attempts) == (JobStatus.running, 1)
        assert claimed.lease_until == now + timedelta(minutes=1)
        assert (
            await JobWrites(store).claim(job.id, lease_until=now + timedelta(minutes=2), now=now)
            is None
        )
        later = now + timedelta(minutes=1, microseconds=1)
        reclaimed = await JobWrites(store).claim(
            job.id, lease_until=later + timedelta(minutes=1), now=later
        )
        assert reclaimed is not None
        assert reclaimed.attempts == 2
        assert await store.get_job(job.id) == reclaimed

    async def test_claim_refuses_finished_and_unknown_jobs(self, store: Store) -> None:
        done = await store.create_job(make_job(status=JobStatus.succeeded))
        now = utcnow()
        assert await JobWrites(store).claim(done.id, lease_until=now, now=now) is None
        assert await JobWrites(store).claim("job_missing", lease_until=now, now=now) is None

    async def test_concurrent_claims_have_one_winner(self, store: Store) -> None:
        job = await store.create_job(make_job())
        now = utcnow()
        lease = now + timedelta(minutes=1)
        results = await asyncio.gather(
            *(JobWrites(store).claim(job.id, lease_until=lease, now=now) for _ in range(8))
        )
        assert len([r for r in results if r is not None]) == 1
        stored = await store.get_job(job.id)
        assert stored is not None and stored.attempts == 1

    async def test_unfinished_jobs(self, store: Store) -> None:
        queued = await store.create_job(make_job())
        running = await store.create_job(make_job(status=JobStatus.running))
        for status in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
            await store.create_job(make_job(status=status))
        batch, jobs = make_batch(1)
        await store.create_batch(batch, jobs)
        refs = await store.unfinished_jobs()
        assert set(refs) == {
            JobRef(queued.id, None, "t1"),
            JobRef(running.id, None, "t1"),
            JobRef(jobs[0].id, batch.id, "t1"),
        }
        assert len(await store.unfinished_jobs(limit=1)) == 1
        only_running = await store.unfinished_jobs(status=JobStatus.running)
        assert only_running == [JobRef(running.id, None, "t1")]

    async def test_unfinished_jobs_updated_before(self, store: Store) -> None:
        old = await store.create_job(make_job())
        await asyncio.sleep(0.002)
        cutoff = utcnow()
        await asyncio.sleep(0.002)
        await store.create_job(make_job())
        assert await store.unfinished_jobs(updated_before=cutoff) == [JobRef(old.id, None, "t1")]
        await JobWrites(store).claim(old.id, **lease())  # touched: fresh
        assert await store.unfinished_jobs(updated_before=cutoff) == []

    async def test_priorities_and_key_ids_round_trip_and_unfinished_jobs_name_their_lanes(
        self, store: Store
    ) -> None:
        high = await store.create_job(make_job("t2", priority="high", key_id="key_1"))
        low = await store.create_job(make_job("t3", priority="low"))
        batch, jobs = make_batch(2, tenant="t4")
        batch = batch.model_copy(update={"priority": "low", "key_id": "key_2"})
        jobs = [j.model_copy(update={"priority": "low", "key_id": "key_2"}) for j in jobs]
        await store.create_batch(batch, jobs)
        stored = await store.get_job(high.id)
        assert stored is not None and (stored.priority, stored.key_id) == ("high", "key_1")
        assert stored.public().priority == "high"
        assert (await store.get_job(jobs[1].id)) == jobs[1]
        stored_batch = await store.get_batch(batch.id, "t4")
        assert stored_batch is not None
        assert (stored_batch.priority, stored_batch.key_id) == ("low", "key_2")
        refs = {ref.id: ref for ref in await store.unfinished_jobs()}
        assert refs[high.id].lane == Lane("high", "t2")
        assert refs[low.id].lane == Lane("low", "t3")
        assert refs[jobs[0].id] == JobRef(jobs[0].id, batch.id, "t4", "low")
        await JobWrites(store).claim(high.id, **lease())  # rewritten: still high
        assert (await store.unfinished_jobs(status=JobStatus.running))[0].lane.priority == "high"

    async def test_count_unfinished(self, store: Store) -> None:
        assert await store.count_unfinished() == {JobStatus.queued: 0, JobStatus.running: 0}
        singles = [await store.create_job(make_job()) for _ in range(3)]
        await store.create_job(make_job("t2", status=JobStatus.running))
        for status in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled):
            await store.create_job(make_job(status=status))
        batch, jobs = make_batch(3, cached=1)
        await store.create_batch(batch, jobs)
        await JobWrites(store).claim(singles[0].id, **lease())
        assert await store.count_unfinished() == {JobStatus.queued: 4, JobStatus.running: 2}

    # batches

    async def test_end_queued_jobs_of_a_batch_in_one_write(self, store: Store) -> None:
        batch, jobs = make_batch(4, cached=1)
        other_batch, other_jobs = make_batch(2)
        await store.create_batch(batch, jobs)
        await store.create_batch(other_batch, other_jobs)
        await JobWrites(store).claim(jobs[1].id, **lease())

        assert await JobWrites(store).end_queued(batch.id, JobStatus.cancelled) == 2
        stored = await store.get_batch(batch.id)
        assert stored is not None
        assert (stored.counts.queued, stored.counts.running) == (0, 1)
        assert (stored.counts.cancelled, stored.counts.succeeded) == (2, 1)
        for job in jobs[2:]:
            cancelled = await store.get_job(job.id)
            assert cancelled is not None and cancelled.status is JobStatus.cancelled
            assert cancelled.completed_at is not None
        untouched = await store.get_batch(other_batch.id)
        assert untouched is not None and untouched.counts.queued == 2
        assert await JobWrites(store).end_queued(batch.id, JobStatus.cancelled) == 0

    async def test_end_queued_jobs_can_fail_them_with_an_error(self, store: Store) -> None:
        batch, jobs = make_batch(2)
        await store.create_batch(batch, jobs)
        error = JobError(code="queue_unavailable", message="refused")
        assert await JobWrites(store).end_queued(batch.id, JobStatus.failed, error) == 2
        failed = await store.get_job(jobs[0].id)
        assert failed is not None and failed.status is JobStatus.failed and failed.error == error
        stored = await store.get_batch(batch.id)
        assert stored is not None and stored.counts.failed == 2

    # the attempt log: every store keeps the history the transitions wrote, unchanged

    async def test_a_retried_then_failed_job_keeps_each_attempt(self, store: Store) -> None:
        job = await store.create_job(make_job())
        writes, note = JobWrites(store), JobError(code="retrying", message="x")
        expected: list[tuple[object, ...]] = []
        for attempt, failure in enumerate((BUSY, TIMED_OUT), start=1):
            running = await writes.claim(job.id, **lease())
            assert running is not None
            requeued = await writes.requeue(
                job.id, attempt=attempt, note=note, not_before=None, failure=failure
            )
            assert requeued is not None
            expected.append((attempt, "retrying", running.updated_at, requeued.updated_at,
                             failure.provider, failure.code, failure.message))  # fmt: skip
        running = await writes.claim(job.id, **lease())
        assert running is not None
        gave_up = JobError(code="llm_unavailable", message="all LLM providers failed")
        outcome = JobOutcome(
            JobStatus.failed, JobStatus.running, attempt=3, error=gave_up, provider="gemini"
        )
        failed = await writes.finish(job.id, outcome)
        assert failed is not None
        expected.append((3, "failed", running.updated_at, failed.updated_at, "gemini",
                         "llm_unavailable", gave_up.message))  # fmt: skip
        stored = await store.get_job(job.id)
        assert stored == failed and history(stored) == expected

    async def test_a_lost_then_recovered_job_keeps_its_lost_attempt(self, store: Store) -> None:
        job = await store.create_job(make_job())
        now = utcnow()
        writes = JobWrites(store)
        lost = await writes.claim(job.id, lease_until=now - timedelta(seconds=1), now=now)
        recovered = await writes.claim(job.id, **lease())
        assert lost is not None and recovered is not None
        done = await writes.finish(job.id, JobOutcome(JobStatus.succeeded, JobStatus.running, 2))
        assert done is not None and done.attempts == 2
        stored = await store.get_job(job.id)
        assert stored == done and history(stored) == [
            (1, "lost", now, recovered.updated_at, None, "lease_expired",
             LEASE_EXPIRED.message),
        ]  # fmt: skip

    async def test_a_restart_logs_the_running_attempt_as_lost(self, store: Store) -> None:
        job = await store.create_job(make_job())
        running = await JobWrites(store).claim(job.id, **lease())
        assert running is not None and await JobWrites(store).restart_running() == 1
        stored = await store.get_job(job.id)
        assert stored is not None and [r[:3] for r in history(stored)] == [
            (1, "lost", running.updated_at)
        ]

    async def test_requeue_running(self, store: Store) -> None:
        batch, jobs = make_batch(2)
        await store.create_batch(batch, jobs)
        await JobWrites(store).claim(jobs[0].id, **lease())
        assert await JobWrites(store).restart_running() == 1
        job = await store.get_job(jobs[0].id)
        assert job is not None and job.status is JobStatus.queued and job.lease_until is None
        stored = await store.get_batch(batch.id)
        assert stored is not None and (stored.counts.queued, stored.counts.running) == (2, 0)

    async def test_retry_failed_queues_failed_jobs_again_and_moves_counters(
        self, store: Store
    ) -> None:
        batch, jobs = make_batch(4, cached=1)
        await store.create_batch(batch, jobs)
        refused = JobOutcome(JobStatus.failed, expect=JobStatus.queued)
        for job in jobs[1:3]:
            await JobWrites(store).finish(job.id, refused)
        days = (utcnow().date(), utcnow().date())
        counted = await store.usage("t1", *days)

        retried = await JobWrites(store).retry_failed(batch.id)
        assert retried == ids(jobs[1:3])  # in submission order
        stored = await store.get_batch(batch.id)
        assert stored is not None
        assert stored.counts == BatchCounts(total=4, queued=3, succeeded=1)
        again = await store.get_job(jobs[1].id)
        assert again is not None and again.status is JobStatus.queued and again.attempts == 0
        assert await store.usage("t1", *days) == counted  # nothing counted by the retry
        assert await JobWrites(store).retry_failed(batch.id) == []
        assert await JobWrites(store).retry_failed("batch_missing") == []

    async def test_a_reopened_batch_forgets_its_end(self, store: Store) -> None:
        batch, jobs = make_batch(1, cached=1)
        await store.create_batch(batch, jobs)
        hook = WebhookDelivery(id="msg_1", next_attempt_at=utcnow())
        closed = await store.mark_batch(
            batch.id,
            expect=[BatchStatus.in_progress],
            to=BatchStatus.completed,
            completed_at=utcnow(),
            webhook=hook,
        )
        assert closed is not None and closed.webhook == hook
        reopened = await store.mark_batch(
            batch.id, expect=[BatchStatus.completed], to=BatchStatus.in_progress, reopen=True
        )
        assert reopened is not None and reopened.status is BatchStatus.in_progress
        assert (reopened.completed_at, reopened.webhook) == (None, None)
        assert await store.get_batch(batch.id) == reopened
        now = utcnow()
        assert await store.due_webhooks(now, now + timedelta(seconds=30), limit=10) == []

    async def test_closable_batch_ids(self, store: Store) -> None:
        done, done_jobs = make_batch(2, cached=2)
        busy, busy_jobs = make_batch(2, cached=1)
        closed, closed_jobs = make_batch(1, cached=1)
        for batch, jobs in ((done, done_jobs), (busy, busy_jobs), (closed, closed_jobs)):
            await store.create_batch(batch, jobs)
        await store.mark_batch(
            closed.id, expect=[BatchStatus.in_progress], to=BatchStatus.completed
        )
        assert await store.closable_batch_ids() == [done.id]

    async def test_batch_idempotency_key_returns_the_earlier_batch(self, store: Store) -> None:
        batch, jobs = make_batch(2)
        batch.idempotency_key, batch.request_hash = "k1", "h1"
        assert await store.create_batch(batch, jobs) == batch
        again, again_jobs = make_batch(2)
        again.idempotency_key = "k1"
        assert await store.create_batch(again, again_jobs) == batch
        assert await store.get_batch(again.id) is None
        assert await store.get_job(again_jobs[0].id) is None
        other_tenant, other_jobs = make_batch(1, tenant="t2")
        other_tenant.idempotency_key = "k1"
        assert await store.create_batch(other_tenant, other_jobs) == other_tenant

    async def test_concurrent_batches_with_one_key_store_one(self, store: Store) -> None:
        made = [make_batch(3) for _ in range(6)]
        for batch, _ in made:
            batch.idempotency_key = "k1"
        results = await asyncio.gather(*(store.create_batch(b, j) for b, j in made))
        assert len({b.id for b in results}) == 1
        assert len(await all_pages(store)) == 3

    async def test_create_batch_stores_batch_and_jobs(self, store: Store) -> None:
        batch, jobs = make_batch(3, cached=1)
        await store.create_batch(batch, jobs)
        assert await store.get_batch(batch.id) == batch
        assert await store.get_batch(batch.id, "t1") == batch
        assert await store.get_batch(batch.id, "t2") is None
        assert await store.get_batch("batch_missing") is None
        for job in jobs:
            assert await store.get_job(job.id, "t1") == job

    async def test_transitions_move_batch_counters(self, store: Store) -> None:
        batch, jobs = make_batch(3, cached=1)
        await store.create_batch(batch, jobs)
        a, b = jobs[1].id, jobs[2].id
        note = JobError(code="retrying", message="x")
        await JobWrites(store).claim(a, **lease())
        await JobWrites(store).requeue(a, attempt=1, note=note, not_before=None)
        await JobWrites(store).claim(a, **lease())
        await JobWrites(store).finish(
            a, JobOutcome(JobStatus.failed, expect=JobStatus.running, attempt=2)
        )
        await JobWrites(store).finish(*cancel(a))  # refused: no change
        await JobWrites(store).claim(b, **lease())
        stored = await store.get_batch(batch.id)
        assert stored is not None
        expected = BatchCounts(total=3, queued=0, running=1, succeeded=1, failed=1, cancelled=0)
        assert stored.counts == expected

    async def test_big_batch_counts_and_pages(self, store: Store) -> None:
        batch, jobs = make_batch(2_000, cached=500)
        await store.create_batch(batch, jobs)
        for job in jobs[500:510]:
            await JobWrites(store).finish(*cancel(job.id))
        stored = await store.get_batch(batch.id)
        assert stored is not None
        assert stored.counts == BatchCounts(total=2_000, queued=1_490, succeeded=500, cancelled=10)
        in_order = await all_pages(store, batch_id=batch.id, limit=300, oldest_first=True)
        assert ids(in_order) == ids(jobs)
        newest_first = await all_pages(store, status=JobStatus.queued, limit=500)
        assert ids(newest_first) == ids(jobs[510:][::-1])

    async def test_mark_batch_is_compare_and_set(self, store: Store) -> None:
        batch, jobs = make_batch(2)
        await store.create_batch(batch, jobs)
        now = utcnow()
        closed = await store.mark_batch(
            batch.id, expect=[BatchStatus.in_progress], to=BatchStatus.completed, completed_at=now
        )
        assert closed is not None
        assert closed.status is BatchStatus.completed
        assert closed.completed_at == now
        assert closed.counts == batch.counts
        assert await store.get_batch(batch.id) == closed
        in_progress = [BatchStatus.in_progress]
        assert (
            await store.mark_batch(batch.id, expect=in_progress, to=BatchStatus.cancelled) is None
        )
        missing = await store.mark_batch(
            "batch_missing", expect=in_progress, to=BatchStatus.completed
        )
        assert missing is None

    async def test_concurrent_batch_completion_has_one_winner(self, store: Store) -> None:
        batch, jobs = make_batch(1)
        await store.create_batch(batch, jobs)
        from_statuses = [BatchStatus.in_progress, BatchStatus.cancelling]
        results = await asyncio.gather(
            *(
                store.mark_batch(batch.id, expect=from_statuses, to=BatchStatus.completed)
                for _ in range(8)
            )
        )
        assert len([r for r in results if r is not None]) == 1

    # webhooks

    async def test_set_webhook_on_jobs_and_batches(self, store: Store) -> None:
        job = await store.create_job(make_job())
        batch, jobs = make_batch(1)
        await store.create_batch(batch, jobs)
        delivery = WebhookDelivery(id="msg_1", attempts=2, last_status_code=500, next_attempt_at=T0)
        assert await store.set_webhook(job.id, delivery, expected=None)
        on_batch = delivery.model_copy(update={"id": "msg_2"})
        assert await store.set_webhook(batch.id, on_batch, expected=None)
        assert not await store.set_webhook("job_missing", delivery, expected=None)
        stored_job, stored_batch = await store.get_job(job.id), await store.get_batch(batch.id)
        assert stored_job is not None and stored_job.webhook == delivery
        assert stored_batch is not None and stored_batch.webhook is not None
        assert stored_batch.webhook.id == "msg_2"

    async def test_set_webhook_writes_only_over_the_delivery_it_read(self, store: Store) -> None:
        """A compare-and-set: an attempt ending as an operator replays (or as another sweeper
        takes the delivery past its lease) must not overwrite what was written meanwhile."""
        job = await store.create_job(make_job())
        batch, jobs = make_batch(1)
        await store.create_batch(batch, jobs)
        for subject_id in (job.id, batch.id):
            read = WebhookDelivery(id="msg_1", next_attempt_at=T0)
            assert await store.set_webhook(subject_id, read, expected=None)
            replayed = read.model_copy(update={"next_attempt_at": T0 + timedelta(seconds=5)})
            assert await store.set_webhook(subject_id, replayed, expected=read)
            attempted = read.model_copy(update={"state": WebhookState.failed, "attempts": 1})
            assert not await store.set_webhook(subject_id, attempted, expected=read)
            assert not await store.set_webhook(subject_id, attempted, expected=None)
            stored = await store.webhook_subject(subject_id)
            assert stored is not None and stored.webhook == replayed
            assert await store.set_webhook(subject_id, attempted, expected=stored.webhook)
            again = await store.webhook_subject(subject_id)
            assert again is not None and again.webhook == attempted

    async def test_due_webhooks_claims_due_pending_deliveries(self, store: Store) -> None:
        now = utcnow()
        due_job = await store.create_job(make_job())
        later_job = await store.create_job(make_job())
        delivered_job = await store.create_job(make_job())
        batch, jobs = make_batch(1)
        await store.create_batch(batch, jobs)
        due = WebhookDelivery(id="a", next_attempt_at=now)
        overdue = WebhookDelivery(id="b", next_attempt_at=T0 - timedelta(days=9999))
        later = WebhookDelivery(id="c", next_attempt_at=now + timedelta(seconds=1))
        done = WebhookDelivery(id="d", state=WebhookState.delivered, next_attempt_at=now)
        for subject_id, delivery in [
            (due_job.id, due),
            (batch.id, overdue),
            (later_job.id, later),
            (delivered_job.id, done),
        ]:
            assert await store.set_webhook(subject_id, delivery, expected=None)
        lease = now + timedelta(seconds=30)
        assert set(await store.due_webhooks(now, lease, limit=10)) == {due_job.id, batch.id}
        assert await store.due_webhooks(now, lease, limit=10) == []
        stored = await store.get_job(due_job.id)
        assert stored is not None and stored.webhook is not None
        assert stored.webhook.next_attempt_at == lease
        assert set(await store.due_webhooks(lease, lease, limit=10)) == {
            due_job.id,
            batch.id,
            later_job.id,
        }

    async def test_concurrent_due_webhook_calls_are_disjoint(self, store: Store) -> None:
        now = utcnow()
        for i in range(10):
            job = await store.create_job(make_job())
            delivery = WebhookDelivery(id=f"m{i}", next_attempt_at=now)
            assert await store.set_webhook(job.id, delivery, expected=None)
        lease = now + timedelta(seconds=30)
        first, second = await asyncio.gather(
            store.due_webhooks(now, lease, limit=6), store.due_webhooks(now, lease, limit=6)
        )
        assert not set(first) & set(second)
        # All ten are taken, none twice; how they split depends on interleaving (a store whose
        # sweeps serialise gives 6 + 4, DynamoDB may give 5 + 5).
        assert len(first) + len(second) == 10 and max(len(first), len(second)) <= 6

    # retention

    async def test_retention_removes_what_ended_long_ago_and_keeps_the_rest(
        self, store: Store
    ) -> None:
        long_ago, lately = utcnow() - RETENTION - timedelta(days=1), utcnow() - timedelta(days=29)
        old = await store.create_job(ended_job(long_ago, idempotency_key="k-old"))
        young = await store.create_job(ended_job(lately))
        waiting = await store.create_job(make_job(created_at=long_ago, updated_at=long_ago))
        running = await store.create_job(make_job(created_at=long_ago, updated_at=long_ago))
        assert await JobWrites(store).claim(running.id, **lease()) is not None
        done_batch, done_jobs = ended_batch(long_ago, BatchStatus.completed)
        cancelled_batch, cancelled_jobs = ended_batch(long_ago, BatchStatus.cancelled)
        open_batch, open_jobs = make_batch(2)
        open_batch.created_at = long_ago
        for batch, jobs in ((done_batch, done_jobs), (cancelled_batch, cancelled_jobs)):
            await store.create_batch(batch, jobs)
        await store.create_batch(open_batch, open_jobs)
        days = (long_ago.date() - timedelta(days=1), utcnow().date())
        usage = await store.usage("t1", *days)

        while await store.purge_expired(limit=3) == 3:
            pass

        gone = [old, *done_jobs, *cancelled_jobs]
        assert [await store.get_job(job.id) for job in gone] == [None] * len(gone)
        assert await store.get_batch(done_batch.id) is None
        assert await store.get_batch(cancelled_batch.id) is None
        kept = [young.id, waiting.id, running.id, *ids(open_jobs)]
        assert sorted(ids(await all_pages(store))) == sorted(kept)
        assert await store.get_batch(open_batch.id) is not None
        assert await store.usage("t1", *days) == usage != []
        fresh = await store.create_job(make_job(idempotency_key="k-old"))
        assert await store.get_job(fresh.id) == fresh


def ended_job(at: datetime, **fields: Any) -> Job:
    """A job answered (from the cache) at `at`."""
    result = Completion(content="hi", provider="p", model="m", latency_ms=3)
    return make_job(
        status=JobStatus.succeeded,
        result=result,
        created_at=at,
        updated_at=at,
        completed_at=at,
        **fields,
    )


def ended_batch(at: datetime, status: BatchStatus) -> tuple[Batch, list[Job]]:
    """A batch that ended at `at`, with two jobs that ended with it."""
    batch, _ = make_batch(0)
    batch.status, batch.created_at, batch.completed_at = status, at, at
    jobs = [ended_job(at, batch_id=batch.id, custom_id=f"r{i}") for i in range(2)]
    batch.counts = BatchCounts(total=2, succeeded=2)
    return batch, jobs


OLD_BATCHES = """CREATE TABLE batches (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, status TEXT NOT NULL, total INTEGER NOT NULL,
    queued INTEGER NOT NULL, running INTEGER NOT NULL, succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL, cancelled INTEGER NOT NULL, webhook_state TEXT,
    webhook_next_at TEXT, data TEXT NOT NULL)"""

JOB_QUERIED = (
    "tenant",
    "status",
    "batch_id",
    "created_at",
    "idempotency_key",
    "webhook_state",
    "webhook_next_at",
)


def index_columns(db: sqlite3.Connection, index: str) -> list[str]:
    return [row[2] for row in db.execute(f"PRAGMA index_info({index})")]


def indexed_columns(db: sqlite3.Connection, table: str) -> set[str]:
    indexes = [row[1] for row in db.execute(f"PRAGMA index_list({table})")]
    return {column for index in indexes for column in index_columns(db, index)}


class TestFakeJobStore(JobStoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return FakeJobStore(retention=RETENTION)


class TestSqliteJobStore(JobStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteJobStore(str(tmp_path / "data" / "chatjobs.db"), retention=RETENTION)
        await store.start()
        yield store
        await store.close()

    async def test_nothing_touches_disk_before_start(self, tmp_path: Path) -> None:
        store = SqliteJobStore(str(tmp_path / "later" / "db.sqlite"))
        assert not (tmp_path / "later").exists()
        assert await store.ping() is False
        await store.start()
        assert await store.ping() is True
        await store.close()

    async def test_records_survive_a_restart(self, tmp_path: Path) -> None:
        path = str(tmp_path / "db.sqlite")
        first = SqliteJobStore(path)
        await first.start()
        job = await first.create_job(make_job())
        await first.close()
        second = SqliteJobStore(path)
        await second.start()
        assert await second.get_job(job.id) == job
        await second.close()

    async def test_schema_uses_wal_and_indexes(self, tmp_path: Path, store: Store) -> None:
        db = sqlite3.connect(tmp_path / "data" / "chatjobs.db")
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert set(JOB_QUERIED) <= indexed_columns(db, "jobs")
            assert {"tenant", "webhook_state", "webhook_next_at"} <= indexed_columns(db, "batches")
            unique_partial = [i[1] for i in db.execute("PRAGMA index_list(jobs)") if i[2] and i[4]]
            assert [index_columns(db, name) for name in unique_partial] == [
                ["tenant", "idempotency_key"]
            ]
        finally:
            db.close()

    async def test_count_unfinished_reads_the_status_index(
        self, tmp_path: Path, store: Store
    ) -> None:
        db = sqlite3.connect(tmp_path / "data" / "chatjobs.db")
        try:
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {COUNT_UNFINISHED}")]
        finally:
            db.close()
        assert any("COVERING INDEX jobs_status" in step for step in plan), plan
        assert not any(step.startswith("SCAN") for step in plan), plan

    async def test_batch_listing_reads_its_index(self, tmp_path: Path, store: Store) -> None:
        db = sqlite3.connect(tmp_path / "data" / "chatjobs.db")
        try:
            sql, params = batch_list_query("t1", encode_cursor(T0, "batch_x"))
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [*params, 21])]
        finally:
            db.close()
        assert any("INDEX batches_tenant_created" in step for step in plan), plan
        assert not any(step.startswith("SCAN") for step in plan), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort: index order

    async def test_a_file_made_before_batch_listing_is_migrated(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        batch, _ = make_batch(1)
        old = sqlite3.connect(path, isolation_level=None)
        try:  # the batches table as it was, holding one batch
            old.execute(OLD_BATCHES)
            row = "?, 't1', 'in_progress', 1, 1, 0, 0, 0, 0, NULL, NULL, ?"
            data = batch.model_dump_json(exclude={"counts"})
            old.execute(f"INSERT INTO batches VALUES ({row})", (batch.id, data))
        finally:
            old.close()
        store = SqliteJobStore(str(path))
        await store.start()
        try:
            later, later_jobs = make_batch(1)
            await store.create_batch(later, later_jobs)
            listed = [b.id for b in await all_batch_pages(store, limit=1)]
        finally:
            await store.close()
        assert listed == [later.id, batch.id]

    async def test_purge_goes_in_bounded_chunks_through_its_indexes(
        self, tmp_path: Path, store: Store
    ) -> None:
        long_ago = utcnow() - RETENTION - timedelta(days=1)
        for _ in range(5):
            await store.create_job(ended_job(long_ago))
        assert [await store.purge_expired(limit=2) for _ in range(4)] == [2, 2, 1, 0]
        db = sqlite3.connect(tmp_path / "data" / "chatjobs.db")
        try:
            for sql in (EXPIRED_JOBS, EXPIRED_BATCHES, EXPIRED_BATCH_KEYS):
                plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", ("x", 1))]
                assert not any(step.startswith("SCAN") for step in plan), plan
        finally:
            db.close()

    async def test_purge_drops_batch_keys_past_their_window_only(
        self, tmp_path: Path, store: Store
    ) -> None:
        batches = [make_batch(1) for _ in range(2)]
        for (batch, jobs), key in zip(batches, ("old", "new"), strict=True):
            batch.idempotency_key = key
            await store.create_batch(batch, jobs)
        db = sqlite3.connect(tmp_path / "data" / "chatjobs.db", isolation_level=None)
        try:
            taken = str(ts(utcnow() - timedelta(hours=25)))
            sql = "UPDATE batch_idempotency SET created_at = ? WHERE idempotency_key = 'old'"
            db.execute(sql, (taken,))
            assert await store.purge_expired(limit=10) == 1
            keys = db.execute("SELECT idempotency_key FROM batch_idempotency").fetchall()
        finally:
            db.close()
        assert keys == [("new",)]
        assert all([await store.get_batch(batch.id) for batch, _ in batches])

    async def test_without_retention_nothing_is_purged(self, tmp_path: Path) -> None:
        forever = SqliteJobStore(str(tmp_path / "forever.db"))
        await forever.start()
        try:
            old = await forever.create_job(ended_job(utcnow() - timedelta(days=3650)))
            assert await forever.purge_expired(limit=10) == 0
            assert await forever.get_job(old.id) == old
        finally:
            await forever.close()

    async def test_failed_batch_write_leaves_nothing_behind(self, store: Store) -> None:
        batch, jobs = make_batch(3)
        taken = await store.create_job(make_job(created_at=T0))
        jobs[2] = jobs[2].model_copy(update={"id": taken.id})
        with pytest.raises(sqlite3.IntegrityError):
            await store.create_batch(batch, jobs)
        assert await store.get_batch(batch.id) is None
        assert await store.get_job(jobs[0].id) is None

    async def test_two_stores_on_one_file_still_compare_and_set(
        self, tmp_path: Path, store: Store
    ) -> None:
        other = SqliteJobStore(str(tmp_path / "data" / "chatjobs.db"))
        await other.start()
        try:
            job = await store.create_job(make_job(idempotency_key="k"))
            assert await other.create_job(make_job(idempotency_key="k")) == job
            results = await asyncio.gather(
                *(JobWrites(s).claim(job.id, **lease()) for s in [store, other] * 4)
            )
            assert len([r for r in results if r is not None]) == 1
        finally:
            await other.close()
