"""The AdminStore contract (the operator's reads across tenants), run against the fake, SQLite and
DynamoDB (moto's server; a Scan fails the test at once). SQLite's statements are also held to
their indexes: `EXPLAIN QUERY PLAN` shows no SCAN of a table."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store import dynamodb_admin
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.adapters.store.sqlite_admin import (
    COUNT_STATUS,
    FAILING_BATCH_WEBHOOKS,
    FAILING_JOB_WEBHOOKS,
    OLDEST_QUEUED,
    QUEUED_IN_BATCHES,
    batch_search,
    job_search,
)
from shared.adapters.store.sqlite_queries import encode_cursor
from shared.admin_queries import BatchQuery, JobQuery
from shared.errors import InvalidCursor
from shared.models import (
    Batch,
    BatchCounts,
    BatchStatus,
    Job,
    JobStatus,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.ports import Store
from tests.contract.test_store_contract import REQUEST, RETENTION
from tests.fakes import FakeJobStore

NOW = utcnow().replace(microsecond=0)


def job(tenant: str, minutes_ago: float, **fields: Any) -> Job:
    return Job(
        tenant=tenant, request=REQUEST, created_at=NOW - timedelta(minutes=minutes_ago), **fields
    )


async def every_page(store: Store, query: JobQuery, limit: int = 3) -> list[Job]:
    seen: list[Job] = []
    cursor: str | None = None
    for _ in range(200):
        page, cursor = await store.find_jobs(query, limit=limit, cursor=cursor)
        assert len(page) <= limit
        seen.extend(page)
        if cursor is None:
            return seen
    raise AssertionError("the listing never ended")


def ids(records: list[Job] | list[Batch] | list[Job | Batch]) -> list[str]:
    return [r.id for r in records]


def full_scan(step: str) -> bool:
    """A plan step reading a whole table. `SCAN t USING INDEX i` walks an index in its order and
    stops at the LIMIT (the unfiltered listing); `SEARCH` reads a range of one."""
    return step.startswith("SCAN") and "USING" not in step


def newest_first(jobs: list[Job]) -> list[str]:
    return ids(sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True))


class AdminStoreContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    @pytest.fixture
    async def jobs(self, store: Store) -> list[Job]:
        """Two tenants' jobs over three days (minutes apart), some failed, some queued."""
        made = [
            job("t1", 1, status=JobStatus.failed),
            job("t2", 2),
            job("t1", 3, status=JobStatus.succeeded),
            job("t2", 60 * 24 + 5, status=JobStatus.failed),  # yesterday
            job("t1", 60 * 24 + 6),
            job("t2", 60 * 48 + 1, status=JobStatus.succeeded),  # the day before
            job("t1", 60 * 48 + 2, status=JobStatus.failed),
        ]
        for one in made:
            await store.create_job(one)
        return made

    async def test_every_tenants_jobs_newest_first_across_pages(
        self, store: Store, jobs: list[Job]
    ) -> None:
        assert ids(await every_page(store, JobQuery())) == newest_first(jobs)
        assert ids(await every_page(store, JobQuery(), limit=1)) == newest_first(jobs)

    @pytest.mark.parametrize(
        "query",
        [
            JobQuery(tenant="t1"),
            JobQuery(status=JobStatus.failed),
            JobQuery(tenant="t2", status=JobStatus.failed),
            JobQuery(created_from=NOW - timedelta(hours=25)),
            JobQuery(created_to=NOW - timedelta(hours=24)),
            JobQuery(
                status=JobStatus.failed,
                created_from=NOW - timedelta(days=3),
                created_to=NOW - timedelta(minutes=2),
            ),
        ],
    )
    async def test_filters_narrow_the_listing(
        self, store: Store, jobs: list[Job], query: JobQuery
    ) -> None:
        def wanted(j: Job) -> bool:
            return (
                query.tenant in (None, j.tenant)
                and query.status in (None, j.status)
                and (query.created_from is None or j.created_at >= query.created_from)
                and (query.created_to is None or j.created_at < query.created_to)
            )

        expected = newest_first([j for j in jobs if wanted(j)])
        assert expected  # every case lists something, and leaves something out
        assert len(expected) < len(jobs)
        assert ids(await every_page(store, query, limit=2)) == expected

    async def test_a_batchs_jobs_by_batch_id(self, store: Store, jobs: list[Job]) -> None:
        batch = Batch(tenant="t2", counts=BatchCounts(total=3, queued=3))
        members = [job("t2", 10 + i, batch_id=batch.id, custom_id=f"r{i}") for i in range(3)]
        await store.create_batch(batch, members)
        assert ids(await every_page(store, JobQuery(batch_id=batch.id), 2)) == newest_first(members)
        assert await every_page(store, JobQuery(batch_id=batch.id, tenant="t1")) == []

    async def test_batches_of_everyone_and_by_tenant_and_status(self, store: Store) -> None:
        made = []
        for i, tenant in enumerate(["t1", "t2", "t1"]):
            batch = Batch(
                tenant=tenant,
                created_at=NOW - timedelta(hours=i * 20),
                counts=BatchCounts(total=1, queued=1),
            )
            made.append(
                await store.create_batch(batch, [job(tenant, i * 60 * 20, batch_id=batch.id)])
            )
        await store.mark_batch(
            made[1].id, expect=[BatchStatus.in_progress], to=BatchStatus.cancelled
        )

        async def listed(query: BatchQuery) -> list[str]:
            seen, cursor = [], None
            while True:
                page, cursor = await store.find_batches(query, limit=1, cursor=cursor)
                seen += ids(page)
                if cursor is None:
                    return seen

        assert await listed(BatchQuery()) == ids(made)
        assert await listed(BatchQuery(tenant="t1")) == [made[0].id, made[2].id]
        assert await listed(BatchQuery(status=BatchStatus.cancelled)) == [made[1].id]

    async def test_failing_webhooks_are_those_that_gave_up_or_retry(self, store: Store) -> None:
        def hooked(state: WebhookState, attempts: int) -> Job:
            delivery = WebhookDelivery(
                id=f"msg_{state}_{attempts}",
                state=state,
                attempts=attempts,
                last_status_code=500 if attempts else None,
                next_attempt_at=NOW + timedelta(minutes=5)
                if state is WebhookState.pending
                else None,
            )
            return job(
                "t1", 1, status=JobStatus.succeeded, webhook_url="http://x.test/h", webhook=delivery
            )

        gave_up, retrying = hooked(WebhookState.failed, 8), hooked(WebhookState.pending, 2)
        quiet = [hooked(WebhookState.pending, 0), hooked(WebhookState.delivered, 1)]
        for one in [gave_up, retrying, *quiet]:
            await store.create_job(one)
        batch = Batch(tenant="t2", counts=BatchCounts(total=1, succeeded=1))
        await store.create_batch(
            batch, [job("t2", 1, batch_id=batch.id, status=JobStatus.succeeded)]
        )
        gave_up_batch = WebhookDelivery(id="msg_b", state=WebhookState.failed, attempts=3)
        assert await store.set_webhook(batch.id, gave_up_batch, expected=None)
        failing = await store.failing_webhooks(limit=10)
        assert ids(failing) == [gave_up.id, batch.id, retrying.id]
        assert len(await store.failing_webhooks(limit=1)) == 1

    async def test_backlog_by_queue(self, store: Store) -> None:
        oldest = job("t1", 30)
        await store.create_job(oldest)
        await store.create_job(job("t2", 5))
        await store.create_job(job("t2", 50, status=JobStatus.running))
        batch = Batch(tenant="t1", counts=BatchCounts(total=3, queued=3))
        await store.create_batch(batch, [job("t1", 20, batch_id=batch.id) for _ in range(3)])
        backlog = await store.queue_backlog()
        assert (backlog.queued_single, backlog.queued_batch, backlog.running) == (2, 3, 1)
        assert backlog.oldest_queued_at == oldest.created_at

    async def test_an_empty_store_has_no_backlog(self, store: Store) -> None:
        backlog = await store.queue_backlog()
        assert (backlog.queued_single, backlog.queued_batch, backlog.running) == (0, 0, 0)
        assert backlog.oldest_queued_at is None

    async def test_a_cursor_it_did_not_make_is_refused(self, store: Store, jobs: list[Job]) -> None:
        with pytest.raises(InvalidCursor):
            await store.find_jobs(JobQuery(), cursor="bm90LWEtY3Vyc29y")


class TestFakeAdminStore(AdminStoreContract):
    @pytest.fixture
    def store(self) -> Store:
        return FakeJobStore(retention=RETENTION)


class TestSqliteAdminStore(AdminStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteJobStore(str(tmp_path / "chatjobs.db"), retention=RETENTION)
        await store.start()
        yield store
        await store.close()

    @pytest.mark.parametrize(
        "query",
        [
            JobQuery(),
            JobQuery(tenant="t1"),
            JobQuery(status=JobStatus.failed),
            JobQuery(batch_id="batch_x"),
            JobQuery(tenant="t1", status=JobStatus.queued, created_from=NOW),
            JobQuery(created_from=NOW, created_to=NOW),
        ],
    )
    async def test_job_listings_read_an_index_in_order(
        self, tmp_path: Path, store: Store, query: JobQuery
    ) -> None:
        for cursor in (None, encode_cursor(NOW, "job_x")):
            sql, params = job_search(query, cursor)
            plan = self.plan(tmp_path, sql, [*params, 51])
            assert not any(full_scan(step) for step in plan), plan
            assert not any("TEMP B-TREE" in step for step in plan), plan  # index order: no sort

    async def test_the_other_reads_use_indexes(self, tmp_path: Path, store: Store) -> None:
        for query in (
            BatchQuery(),
            BatchQuery(tenant="t1"),
            BatchQuery(status=BatchStatus.completed),
        ):
            sql, params = batch_search(query, None)
            plan = self.plan(tmp_path, sql, [*params, 51])
            assert not any(full_scan(step) for step in plan), plan
        for sql, params in (
            (COUNT_STATUS, ["queued"]),
            (OLDEST_QUEUED, []),
            (QUEUED_IN_BATCHES, []),
            (FAILING_JOB_WEBHOOKS, [10]),
            (FAILING_BATCH_WEBHOOKS, [10]),
        ):
            plan = self.plan(tmp_path, sql, params)
            assert not any(full_scan(step) for step in plan), (sql, plan)

    @staticmethod
    def plan(tmp_path: Path, sql: str, params: list[Any]) -> list[str]:
        db = sqlite3.connect(tmp_path / "chatjobs.db")
        try:
            return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        finally:
            db.close()


@pytest.mark.integration
class TestDynamoDbAdminStore(AdminStoreContract):
    @pytest.fixture
    async def store(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[Store]:
        ddb = await aws_clients.client("dynamodb")

        def no_scan(model: Any, **_: Any) -> None:
            if model.name == "Scan":
                raise AssertionError("DynamoDbJobStore must never scan")

        ddb.meta.events.register("before-call.dynamodb", no_scan)
        store = DynamoDbJobStore(aws_clients, aws_layout.table, retention=RETENTION)
        await store.start()
        yield store
        await store.close()
        ddb.meta.events.unregister("before-call.dynamodb", no_scan)

    async def test_a_listing_stopped_by_its_budget_goes_on_where_it_stopped(
        self, store: Store, jobs: list[Job], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(dynamodb_admin, "MAX_QUERIES", 1)  # one Query a call: short pages
        seen = await every_page(store, JobQuery(), limit=5)
        assert ids(seen) == newest_first(jobs)
