"""The UsageStore contract, run against the in-memory fake, SQLite and DynamoDB (moto).

`UsageContract` holds the tests; each `Test…` subclass says how to build its store and adds what
only its technology can show: that a read touches counter rows only (SQLite's query plan, the
DynamoDB requests made) and that counters survive a restart.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.adapters.store.sqlite_usage import USAGE_READ, usage_params
from shared.execution import JobExecutor
from shared.job_writes import JobWrites
from shared.models import (
    Batch,
    BatchCounts,
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
from shared.retry import RetryPolicy
from shared.transitions import JobOutcome
from shared.usage import BUCKET_MS, COUNTER_FIELDS, UsageCounters, latency_bucket
from shared.usage_report import GroupBy, UsageRow, summarize
from tests.fakes import FakeJobStore, FakeLLM

REQUEST = ChatRequest(messages=[Message(role="user", content="hello")], model="m-asked")


def answer(
    provider: str = "gemini",
    model: str = "m1",
    latency_ms: int = 400,
    fallback: bool = False,
    tokens: tuple[int, int] = (3, 5),
) -> Completion:
    usage = Usage(input_tokens=tokens[0], output_tokens=tokens[1])
    return Completion(
        content="hi",
        provider=provider,
        model=model,
        usage=usage,
        latency_ms=latency_ms,
        fallback=fallback,
    )


def make_job(tenant: str = "t1", **fields: Any) -> Job:
    return Job(tenant=tenant, request=fields.pop("request", REQUEST), **fields)


def cache_hit(tenant: str = "t1", when: Any = None, **fields: Any) -> Job:
    when = when or utcnow()
    ended = {"created_at": when, "updated_at": when, "completed_at": when, "result": answer()}
    return make_job(tenant, status=JobStatus.succeeded, cached=True, **(ended | fields))


def lease(minutes: float = 1) -> dict[str, Any]:
    now = utcnow()
    return {"lease_until": now + timedelta(minutes=minutes), "now": now}


def succeed(attempt: int, result: Completion | None = None) -> JobOutcome:
    return JobOutcome(
        JobStatus.succeeded, expect=JobStatus.running, attempt=attempt, result=result or answer()
    )


def fail(attempt: int, code: Any = "llm_rejected") -> JobOutcome:
    error = JobError(code=code, message="no")
    return JobOutcome(JobStatus.failed, expect=JobStatus.running, attempt=attempt, error=error)


async def run_to(store: Store, outcome: JobOutcome, claims: int = 1, **fields: Any) -> Job | None:
    """A job claimed `claims` times (each after the last lease ran out), then ended."""
    job = await store.create_job(make_job(**fields))
    for _ in range(claims):
        assert await JobWrites(store).claim(job.id, lease_until=utcnow(), now=utcnow()) is not None
    return await JobWrites(store).finish(job.id, outcome)


def today() -> date:
    return utcnow().date()


async def rows(store: Store, by: GroupBy, tenant: str = "t1", days: int = 1) -> list[UsageRow]:
    """The tenant's usage from `days` ago to tomorrow (a test may run over midnight)."""
    start, end = today() - timedelta(days=days), today() + timedelta(days=1)
    return summarize(await store.usage(tenant, start, end), by)


async def total(store: Store, tenant: str = "t1") -> dict[str, Any]:
    found = await rows(store, GroupBy.provider, tenant)
    merged = UsageCounters(day=today(), model="", provider="")
    for counters in await store.usage(tenant, today() - timedelta(days=1), today()):
        merged = merged.plus(counters)
    figures = merged.model_dump(exclude={"day", "model", "provider", "latency"})
    return figures | {"groups": [row.group for row in found]}


def figures(**nonzero: Any) -> dict[str, Any]:
    zero: dict[str, Any] = dict.fromkeys(COUNTER_FIELDS, 0)
    return zero | {"failed_by_code": {}} | nonzero


class UsageContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    async def test_a_finished_job_counts_once_under_its_day_model_and_provider(
        self, store: Store
    ) -> None:
        job = await store.create_job(make_job())
        assert await JobWrites(store).claim(job.id, **lease()) is not None
        assert await JobWrites(store).finish(job.id, succeed(1)) is not None
        assert await JobWrites(store).finish(job.id, succeed(1)) is None  # the same delivery again
        counters = await store.usage("t1", today() - timedelta(days=1), today())
        assert [(c.model, c.provider) for c in counters] == [("m1", "gemini")]
        assert await total(store) == figures(
            requests=1,
            succeeded=1,
            llm_calls=1,
            input_tokens=3,
            output_tokens=5,
            groups=["gemini"],
        )
        assert counters[0].latency[latency_bucket(400)] == 1 and sum(counters[0].latency) == 1

    async def test_a_redelivered_job_counts_once_with_every_attempt(self, store: Store) -> None:
        job = await store.create_job(make_job())
        assert await JobWrites(store).claim(job.id, lease_until=utcnow(), now=utcnow()) is not None
        assert (
            await JobWrites(store).claim(job.id, **lease()) is not None
        )  # the first lease ran out
        assert (
            await JobWrites(store).finish(job.id, succeed(1)) is None
        )  # the first worker is fenced off
        done = await asyncio.gather(
            *(JobWrites(store).finish(job.id, succeed(2)) for _ in range(4))
        )
        assert len([d for d in done if d is not None]) == 1
        assert await total(store) == figures(
            requests=1,
            succeeded=1,
            llm_calls=2,
            input_tokens=3,
            output_tokens=5,
            groups=["gemini"],
        )

    async def test_a_job_delivered_twice_through_the_executor_counts_once(
        self, store: Store
    ) -> None:
        executor = JobExecutor(
            store,
            None,
            FakeLLM("gemini"),
            job_timeout_s=5,
            retry=RetryPolicy(budget_s=60, base_s=0.01, max_delay_s=1, max_attempts=3),
            cache_ttl_s=60,
        )
        job = await store.create_job(make_job())
        await asyncio.gather(executor.deliver(job.id), executor.deliver(job.id))
        assert await executor.deliver(job.id) is None  # a redelivery of the finished job
        assert (await total(store))["requests"] == 1
        assert (await total(store))["llm_calls"] == 1

    async def test_failures_count_by_code_and_the_attempt_that_calls_nothing_is_no_call(
        self, store: Store
    ) -> None:
        await run_to(store, fail(1))
        await run_to(store, fail(3, "llm_unavailable"), claims=3)
        await run_to(store, fail(4, "attempts_exhausted"), claims=4)
        assert await total(store) == figures(
            requests=3,
            failed=3,
            llm_calls=1 + 3 + 3,
            failed_by_code={"llm_rejected": 1, "llm_unavailable": 1, "attempts_exhausted": 1},
            groups=["none"],
        )
        assert [row.group for row in await rows(store, GroupBy.model)] == ["m-asked"]

    async def test_cancellations_count_when_they_happen(self, store: Store) -> None:
        unnamed = ChatRequest(messages=REQUEST.messages, model="")
        jobs = [
            await store.create_job(make_job(request=r))
            for r in (unnamed, unnamed.model_copy(update={"model": None}))
        ]
        assert await total(store) == figures(groups=[])
        cancel = JobOutcome(JobStatus.cancelled, expect=JobStatus.queued)
        for job in jobs:
            assert await JobWrites(store).finish(job.id, cancel) is not None
            assert await JobWrites(store).finish(job.id, cancel) is None
        assert await total(store) == figures(requests=2, cancelled=2, groups=["none"])
        assert [row.group for row in await rows(store, GroupBy.model)] == ["default"]

    async def test_a_fallback_answer_counts_as_a_fallback(self, store: Store) -> None:
        fallback = answer("openrouter", "or-model", fallback=True, tokens=(7, 11))
        await run_to(store, succeed(1, fallback))
        await run_to(store, succeed(1))
        by_provider = {row.group: row for row in await rows(store, GroupBy.provider)}
        assert by_provider["openrouter"].fallbacks == 1
        assert by_provider["openrouter"].input_tokens == 7
        assert by_provider["gemini"].fallbacks == 0
        assert [row.group for row in await rows(store, GroupBy.model)] == ["m1", "or-model"]

    async def test_cache_hits_count_when_stored_and_call_no_llm(self, store: Store) -> None:
        await store.create_job(cache_hit(idempotency_key="k"))
        await store.create_job(cache_hit(idempotency_key="k"))  # the same key: no new job
        batch = Batch(tenant="t1")
        jobs = [cache_hit(batch_id=batch.id), cache_hit(batch_id=batch.id), make_job()]
        batch.counts = BatchCounts(total=3, queued=1, succeeded=2)
        await store.create_batch(
            batch, [job.model_copy(update={"batch_id": batch.id}) for job in jobs]
        )
        assert await total(store) == figures(
            requests=3, succeeded=3, cache_hits=3, groups=["cache"]
        )
        (row,) = await rows(store, GroupBy.model)
        assert row.group == "m1" and row.latency_ms_p50 is None

    async def test_ending_a_batchs_queued_jobs_counts_each(self, store: Store) -> None:
        batch = Batch(tenant="t1")
        jobs = [make_job(batch_id=batch.id) for _ in range(5)]
        batch.counts = BatchCounts(total=5, queued=5)
        await store.create_batch(batch, jobs)
        assert await JobWrites(store).end_queued(batch.id, JobStatus.cancelled) == 5
        assert await JobWrites(store).end_queued(batch.id, JobStatus.cancelled) == 0
        assert await total(store) == figures(requests=5, cancelled=5, groups=["none"])

    async def test_many_models_in_one_batch_all_count(self, store: Store) -> None:
        """More usage counter items than one DynamoDB transaction can hold with the jobs."""
        batch = Batch(tenant="t1")
        models = [f"model-{i:03d}" for i in range(120)]
        requests = [REQUEST.model_copy(update={"model": m}) for m in models]
        queued = [make_job(batch_id=batch.id, request=r) for r in requests]
        hits = [
            cache_hit(batch_id=batch.id, request=r, result=answer(model=m))
            for r, m in zip(requests, models, strict=True)
        ]
        batch.counts = BatchCounts(total=240, queued=120, succeeded=120)
        await store.create_batch(batch, queued + hits)
        await JobWrites(store).end_queued(
            batch.id, JobStatus.failed, JobError(code="queue_unavailable", message="x")
        )
        by_model = await rows(store, GroupBy.model)
        assert len(by_model) == 120
        assert {(r.requests, r.failed, r.cache_hits) for r in by_model} == {(2, 1, 1)}
        assert (await store.get_batch(batch.id)) is not None

    async def test_tenants_and_days_are_kept_apart(self, store: Store) -> None:
        days = [today() - timedelta(days=n) for n in (0, 1, 2, 9)]
        for n, day in enumerate(days):
            when = utcnow().replace(year=day.year, month=day.month, day=day.day)
            for _ in range(n + 1):
                await store.create_job(cache_hit("t1", when))
        await store.create_job(cache_hit("t2"))
        await run_to(store, succeed(1), tenant="t2")
        week = await store.usage("t1", today() - timedelta(days=6), today())
        assert sorted((c.day, c.requests) for c in week) == [
            (days[2], 3),
            (days[1], 2),
            (days[0], 1),
        ]
        assert [c.requests for c in await store.usage("t1", days[3], days[3])] == [4]
        assert await store.usage("t3", days[3], today()) == []
        assert (await total(store, "t2"))["requests"] == 2

    async def test_latency_percentiles_come_from_the_buckets(self, store: Store) -> None:
        latencies = [120, 150, 180, 240, 300, 450, 900, 1500, 2500, 9000]
        for ms in latencies:
            await run_to(store, succeed(1, answer(latency_ms=ms)))
        (row,) = await rows(store, GroupBy.day)
        assert row.latency_ms_p50 == BUCKET_MS[latency_bucket(300)]  # nearest rank: the 5th
        assert row.latency_ms_p95 == BUCKET_MS[latency_bucket(9000)]  # the 10th
        assert abs(row.latency_ms_p50 - 300) / 300 <= 0.13


class TestFakeUsage(UsageContract):
    @pytest.fixture
    def store(self) -> Store:
        return FakeJobStore()


class TestSqliteUsage(UsageContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteJobStore(str(tmp_path / "chatjobs.db"))
        await store.start()
        yield store
        await store.close()

    async def test_the_usage_read_uses_the_counters_key_and_never_the_jobs(
        self, tmp_path: Path, store: Store
    ) -> None:
        await run_to(store, succeed(1))
        db = sqlite3.connect(tmp_path / "chatjobs.db")
        try:
            params = usage_params("t1", today(), today())
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {USAGE_READ}", params)]
        finally:
            db.close()
        assert plan == ["SEARCH usage_counters USING PRIMARY KEY (tenant=? AND day>? AND day<?)"], (
            plan
        )

    async def test_counters_survive_a_restart(self, tmp_path: Path, store: Store) -> None:
        await run_to(store, succeed(1))
        await store.close()
        again = SqliteJobStore(str(tmp_path / "chatjobs.db"))
        await again.start()
        try:
            await run_to(again, succeed(1))
            assert (await total(again))["succeeded"] == 2
        finally:
            await again.close()


@pytest.mark.integration
class TestDynamoDbUsage(UsageContract):
    @pytest.fixture
    async def store(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[Store]:
        store = DynamoDbJobStore(aws_clients, aws_layout.table)
        await store.start()
        yield store
        await store.close()

    async def test_the_usage_read_is_one_query_of_the_usage_partition(
        self, aws_clients: AwsClients, store: Store
    ) -> None:
        await run_to(store, succeed(1))
        calls: list[tuple[str, dict[str, Any]]] = []

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            calls.append((model.name, json.loads(params["body"])))  # the request on the wire

        ddb = await aws_clients.client("dynamodb")
        ddb.meta.events.register("before-call.dynamodb.*", record)
        try:
            counters = await store.usage("t1", today() - timedelta(days=366), today())
        finally:
            ddb.meta.events.unregister("before-call.dynamodb.*", record)
        assert [c.requests for c in counters] == [1]
        assert [name for name, _ in calls] == ["Query"], calls
        (body,) = [body for _, body in calls]
        assert "IndexName" not in body
        assert body["ExpressionAttributeValues"][":pk"] == {"S": "USAGE#t1"}
        assert "BETWEEN" in body["KeyConditionExpression"]
