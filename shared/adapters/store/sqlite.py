"""SqliteJobStore: the JobStore port on one SQLite file (WAL mode).

Writes go through one connection on a thread of its own (sqlite_writer.py): writes made at the
same moment share one `BEGIN IMMEDIATE` transaction (which also serialises writers in other
processes sharing the file), and each caller is answered once that transaction has committed.
Reads see the last committed state: reads of one row by its key run on the event loop (a few
microseconds, less than a hop to a thread), longer ones on a reader connection in a thread
(aiosqlite). Status changes are decided by shared.transitions and written with what moves with
them inside one write transaction (sqlite_changes.py).

A write refused for want of room (SQLITE_FULL: the disk, or max_page_count) raises StoreFull, and
from then on `ping` (/readyz) answers with a small write of its own instead of a read, failing
until that write fits again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from shared.adapters.store import sqlite_coalescing as coalescing
from shared.adapters.store import sqlite_key_counters as key_counters
from shared.adapters.store.sqlite_admin import (
    COUNT_STATUS,
    FAILING_BATCH_WEBHOOKS,
    FAILING_JOB_WEBHOOKS,
    OLDEST_QUEUED,
    QUEUED_IN_BATCHES,
    batch_search,
    job_search,
)
from shared.adapters.store.sqlite_api_keys import API_KEYS_SCHEMA, SqliteApiKeys
from shared.adapters.store.sqlite_changes import change_jobs
from shared.adapters.store.sqlite_purge import purge_chunk
from shared.adapters.store.sqlite_queries import (
    BATCH_SELECT,
    CLOSABLE_BATCHES,
    COUNT_UNFINISHED,
    DUE_WEBHOOKS,
    IN_STATUS,
    LEASE_WEBHOOK,
    RETURNING_BATCH,
    UNFINISHED,
    batch_list_query,
    encode_cursor,
    field_json,
    insert_sql,
    list_query,
    scoped,
    update_sql,
)
from shared.adapters.store.sqlite_schema import (
    BATCH_COLUMNS,
    JOB_COLUMNS,
    batch_columns,
    batch_from_row,
    batch_row,
    create_schema,
    job_columns,
    job_row,
    ts,
)
from shared.adapters.store.sqlite_spool import RowSpool
from shared.adapters.store.sqlite_usage import add_usage, read_usage
from shared.adapters.store.sqlite_writer import GroupCommitWriter, is_busy, is_full
from shared.admin_queries import BatchQuery, JobQuery, QueueBacklog, failing_first
from shared.errors import StoreFull
from shared.key_usage import KeyDeltas, KeyMonth, key_usage_row
from shared.lanes import priority_or_default
from shared.models import (
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    WebhookDelivery,
    utcnow,
)
from shared.ports import IdempotentKind, JobRef
from shared.transitions import Change, Decision, UsageTally, created_usage
from shared.usage import UsageCounters

if TYPE_CHECKING:
    from shared.ports import Store

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
INSERT_JOB = insert_sql("jobs", JOB_COLUMNS)
DELETE_JOB = "DELETE FROM jobs WHERE id = ? AND tenant = ? AND status = ?"
IDEMPOTENT_HOLDER = {  # by the unique index on (tenant, idempotency_key), and the key table's
    "job": "SELECT id FROM jobs WHERE tenant = ? AND idempotency_key = ? AND created_at > ?",
    "batch": "SELECT batch_id FROM batch_idempotency"
    " WHERE tenant = ? AND idempotency_key = ? AND created_at > ?",
}
# What a ping writes (and deletes) after SQLITE_FULL: room for a job with a long conversation.
# A few free pages left after deletes would take a small write, while submits still fail.
PROBE_BYTES = 64 * 1024
T = TypeVar("T")


class SqliteJobStore(SqliteApiKeys):
    def __init__(
        self, path: str, *, busy_timeout_ms: int = 5_000, retention: timedelta | None = None
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.retention = retention  # JOB_RETENTION_DAYS; None: keep everything
        self._writer: GroupCommitWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self._point: sqlite3.Connection | None = None  # point reads, on the event loop
        self._full = False  # a write failed with SQLITE_FULL, and no probe has fitted since

    async def start(self) -> None:
        if self._writer is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = GroupCommitWriter(self.path, self._connect_writer)
        await writer.start()
        self._writer = writer
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        self._point = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

    def _connect_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode = WAL")
        create_schema(db)
        db.executescript(API_KEYS_SCHEMA)
        return db

    async def close(self) -> None:
        reader, writer, point = self._reader, self._writer, self._point
        self._reader = self._writer = self._point = None
        if writer is not None:
            await writer.close()
        if reader is not None:
            await reader.close()
        if point is not None:
            point.close()

    async def ping(self) -> bool:
        """The store answers; after a write failed for want of room, a write must fit too."""
        try:
            await self._read_row("SELECT 1", ())
            if self._full:
                await self._write(_probe_room, durable=False)
                self._full = False
                log.warning("the SQLite store %s has room for writes again", self.path)
        except Exception:
            return False
        return True

    async def _read_row(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """A read of at most a row or two, by key: on the loop, unless the file is busy (WAL
        recovery after a crash), when the reader thread waits for it instead."""
        if self._point is None:
            raise RuntimeError("SqliteJobStore.start() has not been called")
        try:
            return self._point.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        return list(await self._read.execute_fetchall(sql, params))

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("SqliteJobStore.start() has not been called")
        return self._reader

    async def _write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run `op` in a write transaction, grouped with concurrent writes (sqlite_writer.py)."""
        if self._writer is None:
            raise RuntimeError("SqliteJobStore.start() has not been called")
        try:
            return await self._writer.run(op, durable=durable)
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            if not self._full:
                log.error("the SQLite store %s is full: writes fail until there is room", self.path)
            self._full = True
            raise StoreFull(f"the SQLite store {self.path} is full: {exc}") from exc

    async def _write_returning(
        self, sql: str, params: Sequence[Any], *, durable: bool = True
    ) -> list[Any]:
        return await self._write(lambda db: db.execute(sql, params).fetchall(), durable=durable)

    async def create_job(self, job: Job) -> Job:
        row, key = job_row(job), job.idempotency_key

        def insert(db: sqlite3.Connection) -> str | None:
            if key:
                earlier = _idempotent_holder(db, job.tenant, key)
                if earlier is not None:
                    return earlier
            db.execute(INSERT_JOB, row)
            usage = created_usage(job)
            if usage is not None:
                add_usage(db, job.tenant, usage)
                if (keyed := key_usage_row(job, usage)) is not None:
                    add_usage(db, *keyed)
            return None

        earlier = await self._write(insert)
        return job if earlier is None else Job.model_validate_json(earlier)

    async def find_idempotent(self, kind: IdempotentKind, tenant: str, key: str) -> str | None:
        since = ts(utcnow() - IDEMPOTENCY_WINDOW)
        rows = await self._read_row(IDEMPOTENT_HOLDER[kind], (tenant, key, since))
        return str(rows[0][0]) if rows else None

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        sql, params = scoped("SELECT data FROM jobs", job_id, tenant)
        rows = await self._read_row(sql, params)
        return Job.model_validate_json(rows[0][0]) if rows else None

    async def list_jobs(
        self,
        tenant: str,
        *,
        status: JobStatus | None = None,
        batch_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[Job], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        sql, params = list_query(tenant, status, batch_id, cursor, oldest_first)
        rows = list(await self._read.execute_fetchall(sql, [*params, limit + 1]))
        jobs = [Job.model_validate_json(row[0]) for row in rows[:limit]]
        more = len(rows) > limit
        return jobs, encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None

    async def change_jobs(
        self, job_ids: Sequence[str], decide: Decision, *, durable: bool = True
    ) -> list[Change]:
        """Each job read, decided and written in one write transaction (sqlite_changes.py)."""
        if not job_ids:
            return []
        return await self._write(lambda db: change_jobs(db, job_ids, decide), durable=durable)

    async def change_job(
        self, job_id: str, decide: Decision, *, durable: bool = True
    ) -> Change | None:
        changes = await self.change_jobs([job_id], decide, durable=durable)
        return changes[0] if changes else None

    async def delete_job(self, job_id: str, tenant: str, *, expect: JobStatus) -> bool:
        """One row holds the job, its result, webhook state and idempotency key."""
        params = (job_id, tenant, JobStatus(expect).value)

        def delete(db: sqlite3.Connection) -> int:
            return db.execute(DELETE_JOB, params).rowcount

        return await self._write(delete) == 1

    async def unfinished_jobs(
        self,
        *,
        limit: int = 10_000,
        updated_before: datetime | None = None,
        status: JobStatus | None = None,
    ) -> list[JobRef]:
        if status is None:
            rows = await self._read.execute_fetchall(UNFINISHED)
        else:
            rows = await self._read.execute_fetchall(IN_STATUS, [JobStatus(status).value])
        if updated_before is not None:
            rows = [r for r in rows if datetime.fromisoformat(r[2]) < updated_before]
        refs = [JobRef(r[0], r[1], r[3], priority_or_default(r[4])) for r in rows]
        return refs[: max(limit, 0)]

    async def count_unfinished(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys((JobStatus.queued, JobStatus.running), 0)
        for status, count in await self._read.execute_fetchall(COUNT_UNFINISHED):
            counts[JobStatus(status)] = count
        return counts

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch:
        # serialising tens of thousands of jobs would hold the event loop, and the write lock if
        # done in the transaction: do it before, in a thread, into a spool (sqlite_spool.py)
        tally = UsageTally()  # cache hits stored answered count as they are stored

        def row_of(job: Job) -> tuple[Any, ...]:
            tally.add(job)
            return job_row(job)

        rows = await asyncio.to_thread(RowSpool.build, jobs, len(jobs), row_of)

        def insert(db: sqlite3.Connection) -> Batch | None:
            if batch.idempotency_key:
                earlier = _batch_holding_key(db, batch)
                if earlier is not None:
                    return earlier
            db.execute(insert_sql("batches", BATCH_COLUMNS), batch_row(batch))
            db.executemany(INSERT_JOB, rows)
            for key, usage in tally.by_key.items():
                add_usage(db, key.tenant, usage)
            return None

        try:
            return await self._write(insert) or batch
        finally:
            rows.close()

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None:
        sql, params = scoped(BATCH_SELECT, batch_id, tenant)
        rows = await self._read_row(sql, params)
        return batch_from_row(rows[0]) if rows else None

    async def list_batches(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        sql, params = batch_list_query(tenant, cursor)
        rows = list(await self._read.execute_fetchall(sql, [*params, limit + 1]))
        batches = [batch_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return batches, encode_cursor(batches[-1].created_at, batches[-1].id) if more else None

    async def mark_batch(
        self,
        batch_id: str,
        *,
        expect: Sequence[BatchStatus],
        to: BatchStatus,
        completed_at: datetime | None = None,
        webhook: WebhookDelivery | None = None,
        reopen: bool = False,
    ) -> Batch | None:
        if not expect:
            return None
        changes: dict[str, Any] = {"status": to}
        if reopen:
            changes |= {"completed_at": None, "webhook": None}
        if completed_at is not None:
            changes["completed_at"] = completed_at
        if webhook is not None:
            changes["webhook"] = webhook
        assignments, params = update_sql(Batch, changes, batch_columns)
        marks = ", ".join("?" for _ in expect)
        sql = f"UPDATE batches SET {assignments} WHERE id = ? AND status IN ({marks}) "
        statuses = [BatchStatus(s).value for s in expect]
        rows = await self._write_returning(sql + RETURNING_BATCH, [*params, batch_id, *statuses])
        return batch_from_row(rows[0]) if rows else None

    async def closable_batch_ids(self) -> list[str]:
        return [row[0] for row in await self._read.execute_fetchall(CLOSABLE_BATCHES)]

    async def set_webhook(
        self, subject_id: str, delivery: WebhookDelivery, *, expected: WebhookDelivery | None
    ) -> bool:
        # jobs and batches store `webhook` alike: the same assignments fit either table
        assignments, params = update_sql(Job, {"webhook": delivery}, job_columns)

        def update(db: sqlite3.Connection) -> bool:  # read and write in one transaction
            for table in ("jobs", "batches"):
                sql = f"SELECT json_extract(data, '$.webhook') FROM {table} WHERE id = ?"
                row = db.execute(sql, [subject_id]).fetchone()
                if row is None:
                    continue
                if _stored_webhook(row[0]) != expected:
                    return False
                db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*params, subject_id])
                return True
            return False

        return await self._write(update)

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        lease = (ts(lease_until), field_json(WebhookDelivery, "next_attempt_at", lease_until))
        params = (ts(now), ts(now), max(limit, 0))  # SQLite reads a negative LIMIT as none

        def take(db: sqlite3.Connection) -> list[str]:
            due = db.execute(DUE_WEBHOOKS, params).fetchall()
            for table in ("jobs", "batches"):
                leased = [(*lease, subject_id) for kind, subject_id, _ in due if kind == table]
                db.executemany(LEASE_WEBHOOK.format(table=table), leased)
            return [subject_id for _, subject_id, _ in due]

        return await self._write(take)

    async def webhook_subject(self, subject_id: str) -> Job | Batch | None:
        job = await self.get_job(subject_id)
        return job if job is not None else await self.get_batch(subject_id)

    # AdminStore: the operator's reads across tenants (SQL in sqlite_admin.py)
    async def find_jobs(
        self, query: JobQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        sql, params = job_search(query, cursor)
        rows = list(await self._read.execute_fetchall(sql, [*params, max(limit, 1) + 1]))
        jobs = [Job.model_validate_json(row[0]) for row in rows[:limit]]
        more = len(rows) > limit
        return jobs, encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None

    async def find_batches(
        self, query: BatchQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        sql, params = batch_search(query, cursor)
        rows = list(await self._read.execute_fetchall(sql, [*params, max(limit, 1) + 1]))
        batches = [batch_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return batches, encode_cursor(batches[-1].created_at, batches[-1].id) if more else None

    async def failing_webhooks(self, *, limit: int = 100) -> list[Job | Batch]:
        jobs = await self._read.execute_fetchall(FAILING_JOB_WEBHOOKS, [limit])
        batches = await self._read.execute_fetchall(FAILING_BATCH_WEBHOOKS, [limit])
        found: list[Job | Batch] = [Job.model_validate_json(row[0]) for row in jobs]
        found += [batch_from_row(row) for row in batches]
        return failing_first(found)[:limit]

    async def queue_backlog(self) -> QueueBacklog:
        async def one(sql: str, *params: str) -> Any:
            rows = await self._read.execute_fetchall(sql, params)
            return next(iter(rows))[0]

        queued, running = await one(COUNT_STATUS, "queued"), await one(COUNT_STATUS, "running")
        in_batches, oldest = await one(QUEUED_IN_BATCHES), await one(OLDEST_QUEUED)
        return QueueBacklog(
            queued_single=max(queued - in_batches, 0),
            queued_batch=min(in_batches, queued),
            running=running,
            oldest_queued_at=datetime.fromisoformat(oldest) if oldest else None,
        )

    async def key_holder(self, tenant: str, cache_key: str) -> str | None:
        rows = await self._read_row(coalescing.KEY_HOLDER, (tenant, cache_key))
        return str(rows[0][0]) if rows else None

    async def take_key(
        self, tenant: str, cache_key: str, job_id: str, *, replacing: str | None
    ) -> bool:
        return await self._write(
            lambda db: coalescing.take_key(db, tenant, cache_key, job_id, replacing),
            durable=False,
        )

    async def release_key(self, tenant: str, cache_key: str, job_id: str) -> None:
        await self._write_returning(
            coalescing.RELEASE_KEY, (tenant, cache_key, job_id), durable=False
        )

    async def add_follower(self, leader_id: str, follower_id: str) -> None:
        await self._write_returning(
            coalescing.ADD_FOLLOWER, (leader_id, follower_id), durable=False
        )

    async def followers(self, leader_id: str) -> list[str]:
        return [
            row[0] for row in await self._read.execute_fetchall(coalescing.FOLLOWERS, (leader_id,))
        ]

    async def drop_followers(self, leader_id: str) -> None:
        await self._write_returning(coalescing.DROP_FOLLOWERS, (leader_id,), durable=False)

    async def purge_expired(self, limit: int) -> int:
        """One chunk of the retention purge (sqlite_purge.py)."""
        retention, now = self.retention, utcnow()
        if retention is None or limit < 1:
            return 0
        # no fsync of its own: a purge lost with the machine is done again by the next sweep
        return await self._write(
            lambda db: purge_chunk(db, now, retention, IDEMPOTENCY_WINDOW, limit), durable=False
        )

    async def usage(self, tenant: str, start: date, end: date) -> list[UsageCounters]:
        """Counter rows only (the triggers in sqlite_usage.py keep them)."""
        return await read_usage(self._read, tenant, start, end)

    # key counters (sqlite_key_counters.py)

    async def reserve(
        self,
        key_id: str,
        month: str,
        *,
        requests: int,
        tokens: int,
        max_requests: int | None,
        max_tokens: int | None,
    ) -> KeyMonth | None:
        return await self._write(
            lambda db: key_counters.reserve(
                db, key_id, month, requests, tokens, max_requests, max_tokens
            )
        )

    async def unreserve(self, key_id: str, month: str, *, requests: int, tokens: int) -> None:
        await self._write(lambda db: key_counters.unreserve(db, key_id, month, requests, tokens))

    async def key_month(self, key_id: str, month: str) -> KeyMonth:
        rows = await self._read_row(key_counters.READ_MONTH, (key_id, month))
        return key_counters.key_month_of(rows[0] if rows else None)

    async def mark_alerted(self, key_id: str, month: str, kind: str) -> bool:
        return await self._write(lambda db: key_counters.mark_alerted(db, key_id, month, kind))

    async def enter(self, key_id: str, jobs: int, ceiling: int) -> bool:
        return await self._write(lambda db: key_counters.enter(db, key_id, jobs, ceiling))

    async def in_flight(self, key_id: str) -> int:
        rows = await self._read_row(key_counters.READ_FLIGHT, (key_id,))
        return int(rows[0][0]) if rows else 0

    async def minute_tokens(self, key_id: str, minute: str) -> int:
        rows = await self._read_row(key_counters.READ_MINUTE, (key_id, minute))
        return int(rows[0][0]) if rows else 0

    async def move_key_counters(self, deltas: KeyDeltas) -> None:
        if not deltas.empty:
            await self._write(lambda db: key_counters.apply_key_deltas(db, deltas))


def _stored_webhook(text: str | None) -> WebhookDelivery | None:
    """A `webhook` read with json_extract (NULL: none yet)."""
    return None if text is None else WebhookDelivery.model_validate_json(text)


def _probe_room(db: sqlite3.Connection) -> None:
    """Take and give back PROBE_BYTES of space: SQLITE_FULL while there is no room for them."""
    # INSERT … SELECT has a statement journal: SQLITE_FULL here rolls back this statement only,
    # not the other writes of the group it joined (a one-row VALUES insert would take them all)
    db.execute("INSERT INTO space_probe (filler) SELECT zeroblob(?)", (PROBE_BYTES,))
    db.execute("DELETE FROM space_probe")


def _batch_holding_key(db: sqlite3.Connection, batch: Batch) -> Batch | None:
    """The batch that holds `batch.idempotency_key` within the window, or None after taking the
    key for `batch` (a holder older than the window gives the key up)."""
    key, tenant, now = batch.idempotency_key, batch.tenant, utcnow()
    db.execute(
        "DELETE FROM batch_idempotency"
        " WHERE tenant = ? AND idempotency_key = ? AND created_at <= ?",
        (tenant, key, ts(now - IDEMPOTENCY_WINDOW)),
    )
    sql = "SELECT batch_id FROM batch_idempotency WHERE tenant = ? AND idempotency_key = ?"
    rows = db.execute(sql, (tenant, key)).fetchall()
    if not rows:
        db.execute(
            "INSERT INTO batch_idempotency VALUES (?, ?, ?, ?)", (tenant, key, batch.id, ts(now))
        )
        return None
    found = db.execute(f"{BATCH_SELECT} WHERE id = ?", (rows[0][0],)).fetchall()
    return batch_from_row(found[0]) if found else None


def _idempotent_holder(db: sqlite3.Connection, tenant: str, key: str) -> str | None:
    """The `data` of the job that used `key` within the window. A holder older than that gives
    the key up."""
    db.execute(
        "UPDATE jobs SET idempotency_key = NULL "
        "WHERE tenant = ? AND idempotency_key = ? AND created_at <= ?",
        (tenant, key, ts(utcnow() - IDEMPOTENCY_WINDOW)),
    )
    sql = "SELECT data FROM jobs WHERE tenant = ? AND idempotency_key = ?"
    rows = db.execute(sql, (tenant, key)).fetchall()
    return str(rows[0][0]) if rows else None


if TYPE_CHECKING:
    _satisfies_port: Store = SqliteJobStore("")
