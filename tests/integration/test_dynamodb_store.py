"""DynamoDbJobStore on moto's server: what matters for DynamoDB beyond the store contract —
races settled by conditions, counters moved once per transition, idempotency items and their
TTL, paging over DynamoDB's own pages, big batches, sweeps that never scan."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store import dynamodb_items as items
from shared.adapters.store import dynamodb_keys
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.errors import Conflict, InvalidCursor
from shared.job_writes import JobWrites
from shared.models import (
    Batch,
    BatchCounts,
    BatchStatus,
    ChatRequest,
    Completion,
    Job,
    JobStatus,
    Message,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.ports import JobRef
from shared.transitions import JobOutcome, end_queued

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)
REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])
RESULT = Completion(content="hi", provider="p", model="m")
STORE_MODULES = sorted(Path(items.__file__).parent.glob("dynamodb*.py"))


def make_job(tenant: str = "t1", **fields: Any) -> Job:
    return Job(tenant=tenant, request=REQUEST, **fields)


def make_batch(
    n: int, tenant: str = "t1", done_every: int = 0, at: datetime = T0, key: str | None = None
) -> tuple[Batch, list[Job]]:
    """A batch whose jobs are created a microsecond apart (as BatchService does); with
    `done_every`, every such job is a cache hit (succeeded at once)."""
    batch = Batch(tenant=tenant, created_at=at, idempotency_key=key)
    jobs = [
        make_job(
            tenant,
            batch_id=batch.id,
            custom_id=f"r{i}",
            created_at=at + timedelta(microseconds=i),
            status=JobStatus.succeeded if done_every and i % done_every == 0 else JobStatus.queued,
        )
        for i in range(n)
    ]
    done = sum(job.status is JobStatus.succeeded for job in jobs)
    batch.counts = BatchCounts(total=n, queued=n - done, succeeded=done)
    return batch, jobs


@pytest.fixture
def calls() -> list[str]:
    """Names of the DynamoDB operations the store makes; a Scan fails the test at once."""
    return []


@pytest.fixture
async def store(
    aws_clients: AwsClients, aws_layout: AwsLayout, calls: list[str]
) -> AsyncIterator[DynamoDbJobStore]:
    ddb = await aws_clients.client("dynamodb")

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)
        if model.name == "Scan":
            raise AssertionError("DynamoDbJobStore must never scan")

    ddb.meta.events.register("before-call.dynamodb", record)
    store = DynamoDbJobStore(aws_clients, aws_layout.table)
    await store.start()
    yield store
    await store.close()
    ddb.meta.events.unregister("before-call.dynamodb", record)


async def raw_item(store: DynamoDbJobStore, key: dict[str, Any]) -> dict[str, Any] | None:
    ddb = store._db.ddb
    response = await ddb.get_item(TableName=store.table, Key=key, ConsistentRead=True)
    found: dict[str, Any] | None = response.get("Item")
    return found


async def counts(store: DynamoDbJobStore, batch_id: str) -> BatchCounts:
    batch = await store.get_batch(batch_id)
    assert batch is not None
    return batch.counts


# races and counters


async def test_raced_claim_has_one_winner_and_moves_counters_once(
    store: DynamoDbJobStore,
) -> None:
    batch, jobs = make_batch(3)
    await store.create_batch(batch, jobs)
    now = utcnow()
    lease = now + timedelta(minutes=1)
    results = await asyncio.gather(
        *(JobWrites(store).claim(jobs[0].id, lease_until=lease, now=now) for _ in range(2))
    )
    winners = [job for job in results if job is not None]
    assert len(winners) == 1 and winners[0].attempts == 1
    assert await store.get_job(jobs[0].id) == winners[0]
    assert await counts(store, batch.id) == BatchCounts(total=3, queued=2, running=1)


async def test_redelivered_finish_moves_counters_once(store: DynamoDbJobStore) -> None:
    batch, jobs = make_batch(2)
    await store.create_batch(batch, jobs)
    now = utcnow()
    claimed = await JobWrites(store).claim(
        jobs[0].id, lease_until=now + timedelta(minutes=1), now=now
    )
    assert claimed is not None
    outcome = JobOutcome(
        status=JobStatus.succeeded,
        expect=JobStatus.running,
        attempt=claimed.attempts,
        result=RESULT,
    )
    first = await JobWrites(store).finish(jobs[0].id, outcome)
    again = await asyncio.gather(*(JobWrites(store).finish(jobs[0].id, outcome) for _ in range(2)))
    assert first is not None and first.result == RESULT and first.lease_until is None
    assert again == [None, None]
    assert await counts(store, batch.id) == BatchCounts(total=2, queued=1, succeeded=1)


async def test_a_job_of_a_batch_not_yet_stored_cannot_move(store: DynamoDbJobStore) -> None:
    """The window in which create_batch has written jobs but not yet the batch item; long
    after it, such a job is an orphan of a crashed write and runs as a job of its own."""
    batch, _ = make_batch(1)
    now = utcnow()
    young = await store.create_job(make_job(batch_id=batch.id, created_at=now))
    lease = now + timedelta(minutes=1)
    assert await JobWrites(store).claim(young.id, lease_until=lease, now=now) is None
    assert await store.get_batch(batch.id) is None
    assert await store.list_jobs("t1", batch_id=batch.id) == ([], None)
    stored = await store.get_job(young.id)
    assert stored is not None and stored.status is JobStatus.queued
    orphan = await store.create_job(
        make_job(batch_id=batch.id, created_at=now - timedelta(hours=1))
    )
    assert await JobWrites(store).claim(orphan.id, lease_until=lease, now=now) is not None
    assert await raw_item(store, items.batch_key(batch.id)) is None  # no half-made batch item


async def test_ending_a_big_batch_moves_counters_in_chunks(
    store: DynamoDbJobStore, calls: list[str]
) -> None:
    batch, jobs = make_batch(250, done_every=10)
    await store.create_batch(batch, jobs)
    calls.clear()
    assert await JobWrites(store).end_queued(batch.id, JobStatus.cancelled) == 225
    assert await counts(store, batch.id) == BatchCounts(total=250, succeeded=25, cancelled=225)
    # 98 + 98 + 29 jobs, each chunk with its batch's counters and one usage counter item
    assert calls.count("TransactWriteItems") == 3
    assert await JobWrites(store).end_queued(batch.id, JobStatus.cancelled) == 0


async def test_a_chunk_meeting_a_changed_job_falls_back_to_one_by_one(
    store: DynamoDbJobStore,
) -> None:
    batch, jobs = make_batch(5)
    await store.create_batch(batch, jobs)
    read = [await store._db.read_job(job.id) for job in jobs]  # as end_queued_jobs reads them
    now = utcnow()
    await JobWrites(store).claim(
        jobs[2].id, lease_until=now + timedelta(minutes=1), now=now
    )  # meanwhile
    snapshots = [snapshot for snapshot in read if snapshot is not None]
    cancel = partial(end_queued, to=JobStatus.cancelled, error=None, now=utcnow())
    moved = await store._db.move_jobs(snapshots, cancel)
    assert len(moved) == 4
    assert await counts(store, batch.id) == BatchCounts(total=5, running=1, cancelled=4)
    running = await store.get_job(jobs[2].id)
    assert running is not None and running.status is JobStatus.running


# idempotency


async def test_idempotency_key_gives_the_same_job(store: DynamoDbJobStore) -> None:
    first = await store.create_job(make_job(idempotency_key="k/1#x"))
    results = await asyncio.gather(
        *(store.create_job(make_job(idempotency_key="k/1#x")) for _ in range(4))
    )
    assert {job.id for job in results} == {first.id}
    other = await store.create_job(make_job("t1#k", idempotency_key="1#x"))  # no collision
    assert other.id != first.id


async def test_expired_idempotency_item_still_present_gives_a_new_job(
    store: DynamoDbJobStore,
) -> None:
    old = await store.create_job(make_job(idempotency_key="k1"))
    key = items.idempotency_key("JOB", "t1", "k1")
    expired = {":past": items.n(int(time.time()) - 60)}
    await store._db.ddb.update_item(
        TableName=store.table,
        Key=key,
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues=expired,
    )
    assert await raw_item(store, key) is not None  # DynamoDB has not deleted it yet
    fresh = await store.create_job(make_job(idempotency_key="k1"))
    assert fresh.id != old.id
    assert await store.create_job(make_job(idempotency_key="k1")) == fresh


async def test_released_key_deletes_its_item_in_the_same_write(store: DynamoDbJobStore) -> None:
    job = await store.create_job(make_job(idempotency_key="k1"))
    refused = JobOutcome(
        status=JobStatus.failed, expect=JobStatus.queued, release_idempotency_key=True
    )
    failed = await JobWrites(store).finish(job.id, refused)
    assert failed is not None and failed.idempotency_key is None
    assert await raw_item(store, items.idempotency_key("JOB", "t1", "k1")) is None
    retried = await store.create_job(make_job(idempotency_key="k1"))
    assert retried.id != job.id


async def test_batch_idempotency_key_gives_the_earlier_batch(store: DynamoDbJobStore) -> None:
    batch, jobs = make_batch(3, at=utcnow(), key="b1")
    assert await store.create_batch(batch, jobs) == batch
    again, again_jobs = make_batch(3, at=utcnow(), key="b1")
    assert await store.create_batch(again, again_jobs) == batch
    assert await store.get_job(again_jobs[0].id) is None


async def test_batch_key_held_by_a_batch_still_being_stored_is_a_conflict(
    store: DynamoDbJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dynamodb_keys, "BATCH_KEY_WAIT", timedelta(seconds=0.3))
    holder = items.idempotency_item("BATCH", "t1", "b1", "batch_unwritten", utcnow())
    await store._db.ddb.put_item(TableName=store.table, Item=holder)
    batch, jobs = make_batch(1, at=utcnow(), key="b1")
    with pytest.raises(Conflict):
        await store.create_batch(batch, jobs)
    holder["reserved_at"] = items.n(int(time.time()) - 3600)  # its writer died an hour ago
    await store._db.ddb.put_item(TableName=store.table, Item=holder)
    assert await store.create_batch(batch, jobs) == batch


# listing


async def test_status_filtered_listing_across_dynamodb_pages(store: DynamoDbJobStore) -> None:
    batch, jobs = make_batch(260, done_every=5)
    await store.create_batch(batch, jobs)
    done = [job.id for job in jobs if job.status is JobStatus.succeeded][::-1]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_jobs(
            "t1", status=JobStatus.succeeded, limit=7, cursor=cursor
        )
        assert len(page) == 7 or cursor is None
        seen += [job.id for job in page]
        if cursor is None:
            break
    assert seen == done


def b64(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param("", id="empty"),
        pytest.param(b64(b"\xff\xfe"), id="not-utf8"),
        pytest.param(b64(["2024-01-01T00:00:00.000000+00:00", "job_1"]), id="sqlite-shape"),
        pytest.param(b64(["j1", "yesterday", "job_1"]), id="bad-time"),
        pytest.param(b64(["j1", "2024-01-01T00:00:00", "job_1"]), id="not-our-time-form"),
        pytest.param(b64(["j1", "2024-01-01T00:00:00.000000+00:00", ""]), id="no-id"),
        pytest.param(b64(b"[" * 5000), id="deeply-nested"),
    ],
)
async def test_garbage_cursor_is_invalid_cursor(store: DynamoDbJobStore, cursor: str) -> None:
    await store.create_job(make_job())
    with pytest.raises(InvalidCursor):
        await store.list_jobs("t1", cursor=cursor)


async def test_thousand_job_batch_lists_in_submission_order(store: DynamoDbJobStore) -> None:
    batch, jobs = make_batch(1_000)
    assert await store.create_batch(batch, jobs) == batch
    listed: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_jobs(
            "t1", batch_id=batch.id, limit=300, cursor=cursor, oldest_first=True
        )
        listed += [job.id for job in page]
        if cursor is None:
            break
    assert listed == [job.id for job in jobs]
    assert await counts(store, batch.id) == BatchCounts(total=1_000, queued=1_000)
    assert await store.list_jobs("t2", batch_id=batch.id) == ([], None)


# sweeps and webhooks


async def test_concurrent_due_webhook_claims_are_disjoint(store: DynamoDbJobStore) -> None:
    now = utcnow()
    subjects: set[str] = set()
    for i in range(16):
        job = await store.create_job(make_job())
        delivery = WebhookDelivery(id=f"m{i}", next_attempt_at=now)
        assert await store.set_webhook(job.id, delivery, expected=None)
        subjects.add(job.id)
    batch, jobs = make_batch(1)
    await store.create_batch(batch, jobs)
    delivery = WebhookDelivery(id="mb", next_attempt_at=now)
    assert await store.set_webhook(batch.id, delivery, expected=None)
    subjects.add(batch.id)
    lease = now + timedelta(seconds=30)
    first, second = await asyncio.gather(
        store.due_webhooks(now, lease, limit=10), store.due_webhooks(now, lease, limit=10)
    )
    assert not set(first) & set(second)
    assert set(first) | set(second) == subjects
    assert await store.due_webhooks(now, lease, limit=10) == []


async def test_sparse_indexes_hold_only_what_sweeps_need(store: DynamoDbJobStore) -> None:
    job = await store.create_job(make_job())
    now = utcnow()
    claimed = await JobWrites(store).claim(job.id, lease_until=now + timedelta(minutes=1), now=now)
    assert claimed is not None
    running = await raw_item(store, items.job_key(job.id))
    assert running is not None and running["gsi_unfinished"]["S"].startswith("JOB#")
    outcome = JobOutcome(
        status=JobStatus.succeeded,
        expect=JobStatus.running,
        webhook=WebhookDelivery(id="m", next_attempt_at=now),
    )
    await JobWrites(store).finish(job.id, outcome)
    done = await raw_item(store, items.job_key(job.id))
    assert done is not None and "gsi_unfinished" not in done and "gsi_webhook" in done
    delivered_now = WebhookDelivery(id="m", state=WebhookState.delivered)
    assert await store.set_webhook(job.id, delivered_now, expected=outcome.webhook)
    delivered = await raw_item(store, items.job_key(job.id))
    assert delivered is not None and "gsi_webhook" not in delivered


async def test_sweeps_query_indexes_and_never_scan(
    store: DynamoDbJobStore, calls: list[str]
) -> None:
    batch, jobs = make_batch(12, done_every=4)
    await store.create_batch(batch, jobs)
    single = await store.create_job(make_job(created_at=T0, updated_at=T0))
    now = utcnow()
    await JobWrites(store).claim(jobs[1].id, lease_until=now + timedelta(minutes=1), now=now)
    calls.clear()
    assert await store.count_unfinished() == {JobStatus.queued: 9, JobStatus.running: 1}
    refs = await store.unfinished_jobs(limit=3)
    assert refs[0][:2] == (single.id, None) and len(refs) == 3
    old = await store.unfinished_jobs(updated_before=T0 + timedelta(seconds=1))
    assert [ref[:2] for ref in old] == [(single.id, None)]
    assert await JobWrites(store).restart_running() == 1
    assert await store.closable_batch_ids() == []
    await JobWrites(store).end_queued(batch.id, JobStatus.cancelled)
    assert await store.closable_batch_ids() == [batch.id]
    closed = await store.mark_batch(
        batch.id, expect=[BatchStatus.in_progress], to=BatchStatus.completed, completed_at=now
    )
    assert closed is not None and closed.counts.cancelled == 9
    assert await store.closable_batch_ids() == []
    keyed = {"Query", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "TransactWriteItems"}
    assert set(calls) <= keyed  # BatchGetItem: open batches, fetched by the keys the index holds
    assert "Query" in calls


async def test_start_makes_no_table_and_close_leaves_the_clients_open(
    aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    opened = aws_clients.opened
    missing = DynamoDbJobStore(aws_clients, "no-such-table")
    assert await missing.ping() is False  # before start
    await missing.start()
    assert await missing.ping() is False
    await missing.close()
    ddb = await aws_clients.client("dynamodb")
    assert "no-such-table" not in (await ddb.list_tables())["TableNames"]
    store = DynamoDbJobStore(aws_clients, aws_layout.table)
    await store.start()
    assert await store.ping() is True
    assert aws_clients.opened == opened  # the stores took the process's client, left it open


def test_no_module_of_the_store_calls_scan() -> None:
    assert STORE_MODULES
    for module in STORE_MODULES:
        assert not re.search(r"\bscan\b", module.read_text(), re.IGNORECASE), module.name


async def test_batch_listing_queries_its_index_and_never_scans(
    store: DynamoDbJobStore, calls: list[str]
) -> None:
    made = [make_batch(1, at=T0 + timedelta(seconds=i)) for i in range(5)]
    for batch, jobs in made:
        await store.create_batch(batch, jobs)
    calls.clear()
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_batches("t1", limit=2, cursor=cursor)
        seen += [batch.id for batch in page]
        if cursor is None:
            break
    assert seen == [batch.id for batch, _ in made[::-1]]
    # the index holds keys (names.INDEX_PROJECTIONS): each page's batches are fetched by key
    assert calls == ["Query", "BatchGetItem"] * 3
    with pytest.raises(InvalidCursor):  # a job listing's cursor is not a batch listing's
        job_cursor = base64.urlsafe_b64encode(json.dumps(["j1", T0.isoformat(), "x"]).encode())
        await store.list_batches("t1", cursor=job_cursor.decode())


async def test_records_stored_in_earlier_formats_are_read_and_rewritten_packed(
    store: DynamoDbJobStore,
) -> None:
    """Items written by earlier releases: `data` as JSON text (before compression) or as plain
    zlib (before the preset dictionary), with the attributes those releases kept. The store
    reads them, and the next write stores the record with the dictionary."""
    import zlib

    ddb = store._db.ddb
    jobs = [make_job(), make_job()]
    stored = [
        {"S": jobs[0].model_dump_json()},
        {"B": zlib.compress(jobs[1].model_dump_json().encode())},
    ]
    for job, data in zip(jobs, stored, strict=True):
        item = items.job_item(job, 1, None) | {"data": data, "tenant": {"S": job.tenant}}
        await ddb.put_item(TableName=store.table, Item=item)
        assert await store.get_job(job.id) == job
        now = utcnow()
        lease = now + timedelta(minutes=1)
        claimed = await JobWrites(store).claim(job.id, lease_until=lease, now=now)
        assert claimed is not None and claimed.status is JobStatus.running
        raw = await raw_item(store, items.job_key(job.id))
        assert raw is not None and raw["data"]["B"][1] & 0x20  # zlib's FDICT: the dictionary
        assert "tenant" not in raw  # what nothing reads is no longer written


async def test_a_claim_keeps_the_unfinished_entry_and_the_sweep_still_finds_stale_jobs(
    store: DynamoDbJobStore,
) -> None:
    """A claim rewrites the job's `unfinished` entry in place (its sort key stays the time it
    was queued); the projected `updated_at` is what "unchanged since" reads."""
    job = await store.create_job(make_job(created_at=T0, updated_at=T0))
    queued = await raw_item(store, items.job_key(job.id))
    assert queued is not None
    claimed_at = T0 + timedelta(seconds=10)
    lease = claimed_at + timedelta(minutes=1)
    assert await JobWrites(store).claim(job.id, lease_until=lease, now=claimed_at) is not None
    running = await raw_item(store, items.job_key(job.id))
    assert running is not None
    assert running["gsi_unfinished_sk"] == queued["gsi_unfinished_sk"]
    assert running["updated_at"]["S"] == items.iso(claimed_at)
    # claimed after the cutoff: not stale; unchanged since before it: stale, running or not
    assert await store.unfinished_jobs(updated_before=T0 + timedelta(seconds=5)) == []
    assert await store.unfinished_jobs(updated_before=T0 + timedelta(seconds=11)) == [
        JobRef(job.id, None, job.tenant)
    ]
    # an entry written before `updated_at` was projected is bounded by its sort key alone
    older = make_job(created_at=T0, updated_at=T0)
    item = items.job_item(older, 1, None)
    del item["updated_at"]
    await store._db.ddb.put_item(TableName=store.table, Item=item)
    assert await store.unfinished_jobs(updated_before=T0 + timedelta(seconds=5)) == [
        JobRef(older.id, None, older.tenant)
    ]
