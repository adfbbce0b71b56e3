"""SqliteJobStore: the JobStore port on one SQLite file (aiosqlite, WAL mode).

Writes go through one connection under an asyncio lock, each in a `BEGIN IMMEDIATE` transaction
(which also serialises writers in other processes sharing the file); reads use a second connection
and see the last committed state. Status changes are single conditional UPDATEs, and a trigger
moves batch counters in the same statement (see sqlite_schema.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiosqlite

from shared.adapters.store.outcome import outcome_changes
from shared.adapters.store.sqlite_queries import (
    ATTEMPTS_PLUS_ONE,
    BATCH_SELECT,
    CLAIMABLE,
    CLOSABLE_BATCHES,
    COUNT_UNFINISHED,
    DUE_WEBHOOKS,
    LEASE_WEBHOOK,
    RETURNING_BATCH,
    UNFINISHED,
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
    SCHEMA,
    batch_columns,
    batch_from_row,
    batch_row,
    job_columns,
    job_row,
    ts,
)
from shared.adapters.store.sqlite_usage import read_usage
from shared.models import (
    Batch,
    BatchStatus,
    Job,
    JobError,
    JobStatus,
    WebhookDelivery,
    utcnow,
)
from shared.ports import JobOutcome, JobRef
from shared.usage import UsageCounters

if TYPE_CHECKING:
    from shared.ports import Store

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class SqliteJobStore:
    def __init__(self, path: str, *, busy_timeout_ms: int = 5_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def start(self) -> None:
        if self._writer is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._writer.executescript(SCHEMA)
        self._reader = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await db.execute("PRAGMA journal_mode = WAL")
        return db

    async def close(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                await db.close()
        self._reader = self._writer = None

    async def ping(self) -> bool:
        try:
            await self._read.execute_fetchall("SELECT 1")
        except Exception:
            return False
        return True

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("SqliteJobStore.start() has not been called")
        return self._reader

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._writer is None:
            raise RuntimeError("SqliteJobStore.start() has not been called")
        async with self._write_lock:
            db = self._writer
            try:  # BEGIN inside: a cancelled BEGIN still runs, and must be rolled back
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                await db.rollback()
                raise

    async def _write_returning(self, sql: str, params: Sequence[Any]) -> list[Any]:
        async with self._transaction() as db:
            return list(await db.execute_fetchall(sql, params))

    async def create_job(self, job: Job) -> Job:
        async with self._transaction() as db:
            if job.idempotency_key:
                earlier = await _idempotent_holder(db, job.tenant, job.idempotency_key)
                if earlier is not None:
                    return earlier
            await db.execute(insert_sql("jobs", JOB_COLUMNS), job_row(job))
        return job

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        sql, params = scoped("SELECT data FROM jobs", job_id, tenant)
        rows = list(await self._read.execute_fetchall(sql, params))
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

    async def claim(self, job_id: str, *, lease_until: datetime, now: datetime) -> Job | None:
        values = {"status": JobStatus.running, "lease_until": lease_until, "updated_at": utcnow()}
        assignments, params = update_sql(Job, values, job_columns, base=ATTEMPTS_PLUS_ONE)
        sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND {CLAIMABLE} RETURNING data"
        rows = await self._write_returning(sql, [*params, job_id, ts(now), ts(now)])
        return Job.model_validate_json(rows[0][0]) if rows else None

    async def requeue(
        self, job_id: str, *, attempt: int, note: JobError, not_before: datetime | None
    ) -> Job | None:
        values = {"error": note, "lease_until": None, "not_before": not_before}
        return await self._move(job_id, JobStatus.running, JobStatus.queued, values, attempt)

    async def finish(self, job_id: str, outcome: JobOutcome) -> Job | None:
        values = outcome_changes(outcome, utcnow())
        return await self._move(job_id, outcome.expect, outcome.status, values, outcome.attempt)

    async def _move(
        self,
        job_id: str,
        expect: JobStatus,
        to: JobStatus,
        changes: dict[str, Any],
        attempt: int | None,
    ) -> Job | None:
        """One conditional UPDATE: `expect` → `to` (the trigger moves the batch counters)."""
        values = {**changes, "status": to, "updated_at": utcnow()}
        assignments, params = update_sql(Job, values, job_columns)
        sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND status = ?"
        where: list[Any] = [job_id, expect.value]
        if attempt is not None:
            sql += " AND json_extract(data, '$.attempts') = ?"
            where.append(attempt)
        rows = await self._write_returning(sql + " RETURNING data", [*params, *where])
        return Job.model_validate_json(rows[0][0]) if rows else None

    async def unfinished_jobs(
        self, *, limit: int = 10_000, updated_before: datetime | None = None
    ) -> list[JobRef]:
        rows = await self._read.execute_fetchall(UNFINISHED)
        if updated_before is not None:
            rows = [r for r in rows if datetime.fromisoformat(r[2]) < updated_before]
        return [JobRef(row[0], row[1]) for row in rows][: max(limit, 0)]

    async def count_unfinished(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys((JobStatus.queued, JobStatus.running), 0)
        for status, count in await self._read.execute_fetchall(COUNT_UNFINISHED):
            counts[JobStatus(status)] = count
        return counts

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch:
        # serialising tens of thousands of jobs would hold the event loop: do it in a thread
        rows = await asyncio.to_thread(lambda: [job_row(job) for job in jobs])
        async with self._transaction() as db:
            if batch.idempotency_key:
                earlier = await _batch_holding_key(db, batch)
                if earlier is not None:
                    return earlier
            await db.execute(insert_sql("batches", BATCH_COLUMNS), batch_row(batch))
            await db.executemany(insert_sql("jobs", JOB_COLUMNS), rows)
        return batch

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None:
        sql, params = scoped(BATCH_SELECT, batch_id, tenant)
        rows = list(await self._read.execute_fetchall(sql, params))
        return batch_from_row(rows[0]) if rows else None

    async def mark_batch(
        self,
        batch_id: str,
        *,
        expect: Sequence[BatchStatus],
        to: BatchStatus,
        completed_at: datetime | None = None,
        webhook: WebhookDelivery | None = None,
    ) -> Batch | None:
        if not expect:
            return None
        changes: dict[str, Any] = {"status": to}
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

    async def end_queued_jobs(
        self,
        batch_id: str,
        to: Literal[JobStatus.failed, JobStatus.cancelled],
        error: JobError | None = None,
    ) -> int:
        now = utcnow()
        values = {"status": to, "updated_at": now, "completed_at": now, "error": error}
        return await self._update_all(values, "batch_id = ? AND status = 'queued'", [batch_id])

    async def requeue_running(self) -> int:
        values = {"status": JobStatus.queued, "updated_at": utcnow(), "lease_until": None}
        return await self._update_all(values, "status = 'running'", [])

    async def _update_all(self, values: dict[str, Any], where: str, args: list[Any]) -> int:
        assignments, params = update_sql(Job, values, job_columns)
        async with self._transaction() as db:
            cursor = await db.execute(f"UPDATE jobs SET {assignments} WHERE {where}", params + args)
            return cursor.rowcount

    async def closable_batch_ids(self) -> list[str]:
        return [row[0] for row in await self._read.execute_fetchall(CLOSABLE_BATCHES)]

    async def set_webhook(self, subject_id: str, delivery: WebhookDelivery) -> None:
        # jobs and batches store `webhook` alike: the same assignments fit either table
        assignments, params = update_sql(Job, {"webhook": delivery}, job_columns)
        async with self._transaction() as db:
            for table in ("jobs", "batches"):
                sql = f"UPDATE {table} SET {assignments} WHERE id = ?"
                if (await db.execute(sql, [*params, subject_id])).rowcount:
                    return

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        lease = (ts(lease_until), field_json(WebhookDelivery, "next_attempt_at", lease_until))
        async with self._transaction() as db:
            params = (ts(now), ts(now), max(limit, 0))  # SQLite reads a negative LIMIT as none
            due = list(await db.execute_fetchall(DUE_WEBHOOKS, params))
            for table in ("jobs", "batches"):
                leased = [(*lease, subject_id) for kind, subject_id, _ in due if kind == table]
                await db.executemany(LEASE_WEBHOOK.format(table=table), leased)
        return [subject_id for _, subject_id, _ in due]

    async def webhook_subject(self, subject_id: str) -> Job | Batch | None:
        job = await self.get_job(subject_id)
        return job if job is not None else await self.get_batch(subject_id)

    async def usage(self, tenant: str, start: date, end: date) -> list[UsageCounters]:
        """Counter rows only (the triggers in sqlite_usage.py keep them)."""
        return await read_usage(self._read, tenant, start, end)


async def _batch_holding_key(db: aiosqlite.Connection, batch: Batch) -> Batch | None:
    """The batch that holds `batch.idempotency_key` within the window, or None after taking the
    key for `batch` (a holder older than the window gives the key up)."""
    key, tenant, now = batch.idempotency_key, batch.tenant, utcnow()
    await db.execute(
        "DELETE FROM batch_idempotency"
        " WHERE tenant = ? AND idempotency_key = ? AND created_at <= ?",
        (tenant, key, ts(now - IDEMPOTENCY_WINDOW)),
    )
    sql = "SELECT batch_id FROM batch_idempotency WHERE tenant = ? AND idempotency_key = ?"
    rows = list(await db.execute_fetchall(sql, (tenant, key)))
    if not rows:
        await db.execute(
            "INSERT INTO batch_idempotency VALUES (?, ?, ?, ?)", (tenant, key, batch.id, ts(now))
        )
        return None
    found = list(await db.execute_fetchall(f"{BATCH_SELECT} WHERE id = ?", (rows[0][0],)))
    return batch_from_row(found[0]) if found else None


async def _idempotent_holder(db: aiosqlite.Connection, tenant: str, key: str) -> Job | None:
    """The job that used `key` within the window. A holder older than that gives the key up."""
    await db.execute(
        "UPDATE jobs SET idempotency_key = NULL "
        "WHERE tenant = ? AND idempotency_key = ? AND created_at <= ?",
        (tenant, key, ts(utcnow() - IDEMPOTENCY_WINDOW)),
    )
    sql = "SELECT data FROM jobs WHERE tenant = ? AND idempotency_key = ?"
    rows = list(await db.execute_fetchall(sql, (tenant, key)))
    return Job.model_validate_json(rows[0][0]) if rows else None


if TYPE_CHECKING:
    _satisfies_port: Store = SqliteJobStore("")
