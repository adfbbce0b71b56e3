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
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from shared.adapters.store.sqlite_schema import (
    BATCH_COLUMNS,
    BATCH_SELECT,
    COUNT_COLUMNS,
    JOB_COLUMNS,
    SCHEMA,
    batch_columns,
    batch_from_row,
    batch_row,
    decode_cursor,
    encode_cursor,
    field_json,
    insert_sql,
    job_columns,
    job_row,
    ts,
    update_sql,
    validated,
)
from shared.models import Batch, Job, JobStatus, WebhookDelivery, utcnow

if TYPE_CHECKING:
    from shared.ports import JobStore

IDEMPOTENCY_WINDOW = timedelta(hours=24)
_RETURNING_BATCH = f"RETURNING data, {', '.join(COUNT_COLUMNS)}"
_ATTEMPTS_PLUS_ONE = "json_set(data, '$.attempts', json_extract(data, '$.attempts') + 1)"
_CLAIMABLE = (
    "(status = 'queued' OR (status = 'running' AND (lease_until IS NULL OR lease_until < ?)))"
)
_DUE_WEBHOOKS = """
    SELECT 'jobs', id, webhook_next_at FROM jobs
        WHERE webhook_state = 'pending' AND webhook_next_at <= ?
    UNION ALL
    SELECT 'batches', id, webhook_next_at FROM batches
        WHERE webhook_state = 'pending' AND webhook_next_at <= ?
    ORDER BY webhook_next_at LIMIT ?
"""


class SqliteJobStore:
    def __init__(self, path: str, *, busy_timeout_ms: int = 5_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def start(self) -> None:
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
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.execute("COMMIT")

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
        sql, params = _scoped("SELECT data FROM jobs", job_id, tenant)
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
    ) -> tuple[list[Job], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        sql, params = _list_query(tenant, status, batch_id, cursor)
        rows = list(await self._read.execute_fetchall(sql, [*params, limit + 1]))
        jobs = [Job.model_validate_json(row[0]) for row in rows[:limit]]
        more = len(rows) > limit
        return jobs, encode_cursor(jobs[-1].created_at, jobs[-1].id) if more else None

    async def transition(
        self,
        job_id: str,
        from_statuses: Sequence[JobStatus],
        to_status: JobStatus,
        **changes: Any,
    ) -> Job | None:
        if not from_statuses:
            return None
        fields = validated(Job, {**changes, "status": to_status, "updated_at": utcnow()})
        assignments, params = update_sql(Job, fields, job_columns(fields))
        marks = ", ".join("?" for _ in from_statuses)
        sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND status IN ({marks}) RETURNING data"
        statuses = [JobStatus(s).value for s in from_statuses]
        rows = await self._write_returning(sql, [*params, job_id, *statuses])
        return Job.model_validate_json(rows[0][0]) if rows else None

    async def claim(self, job_id: str, lease_until: datetime, now: datetime) -> Job | None:
        values = {"status": JobStatus.running, "lease_until": lease_until, "updated_at": utcnow()}
        fields = validated(Job, values)
        assignments, params = update_sql(Job, fields, job_columns(fields), _ATTEMPTS_PLUS_ONE)
        sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND {_CLAIMABLE} RETURNING data"
        rows = await self._write_returning(sql, [*params, job_id, ts(now)])
        return Job.model_validate_json(rows[0][0]) if rows else None

    async def unfinished_job_ids(self, limit: int = 10_000) -> list[str]:
        sql = (
            "SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at LIMIT ?"
        )
        return [row[0] for row in await self._read.execute_fetchall(sql, (limit,))]

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> None:
        rows = [job_row(job) for job in jobs]
        async with self._transaction() as db:
            await db.execute(insert_sql("batches", BATCH_COLUMNS), batch_row(batch))
            await db.executemany(insert_sql("jobs", JOB_COLUMNS), rows)

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None:
        sql, params = _scoped(BATCH_SELECT, batch_id, tenant)
        rows = list(await self._read.execute_fetchall(sql, params))
        return batch_from_row(rows[0]) if rows else None

    async def set_batch_status(
        self, batch_id: str, from_statuses: Sequence[str], to_status: str, **changes: Any
    ) -> Batch | None:
        if not from_statuses:
            return None
        fields = validated(Batch, {**changes, "status": to_status})
        assignments, params = update_sql(Batch, fields, batch_columns(fields))
        marks = ", ".join("?" for _ in from_statuses)
        sql = f"UPDATE batches SET {assignments} WHERE id = ? AND status IN ({marks}) "
        rows = await self._write_returning(
            sql + _RETURNING_BATCH, [*params, batch_id, *map(str, from_statuses)]
        )
        return batch_from_row(rows[0]) if rows else None

    async def set_webhook(self, subject_id: str, delivery: WebhookDelivery) -> None:
        fields = validated(Job, {"webhook": delivery})
        assignments, params = update_sql(Job, fields, job_columns(fields))
        async with self._transaction() as db:
            for table in ("jobs", "batches"):
                cursor = await db.execute(
                    f"UPDATE {table} SET {assignments} WHERE id = ?", [*params, subject_id]
                )
                if cursor.rowcount:
                    return

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        lease = (ts(lease_until), field_json(WebhookDelivery, "next_attempt_at", lease_until))
        async with self._transaction() as db:
            due = list(await db.execute_fetchall(_DUE_WEBHOOKS, (ts(now), ts(now), limit)))
            for table in ("jobs", "batches"):
                await db.executemany(
                    f"UPDATE {table} SET webhook_next_at = ?, "
                    "data = json_set(data, '$.webhook.next_attempt_at', json(?)) WHERE id = ?",
                    [(*lease, subject_id) for kind, subject_id, _ in due if kind == table],
                )
        return [subject_id for _, subject_id, _ in due]


async def _idempotent_holder(db: aiosqlite.Connection, tenant: str, key: str) -> Job | None:
    """The job that used `key` within the window. A holder older than that gives the key up."""
    cutoff = ts(utcnow() - IDEMPOTENCY_WINDOW)
    await db.execute(
        "UPDATE jobs SET idempotency_key = NULL "
        "WHERE tenant = ? AND idempotency_key = ? AND created_at <= ?",
        (tenant, key, cutoff),
    )
    rows = list(
        await db.execute_fetchall(
            "SELECT data FROM jobs WHERE tenant = ? AND idempotency_key = ?", (tenant, key)
        )
    )
    return Job.model_validate_json(rows[0][0]) if rows else None


def _scoped(select: str, subject_id: str, tenant: str | None) -> tuple[str, list[str]]:
    if tenant is None:
        return f"{select} WHERE id = ?", [subject_id]
    return f"{select} WHERE id = ? AND tenant = ?", [subject_id, tenant]


def _list_query(
    tenant: str, status: JobStatus | None, batch_id: str | None, cursor: str | None
) -> tuple[str, list[Any]]:
    """Keyset pagination on (created_at, id): newest first, or oldest first within a batch."""
    oldest_first = batch_id is not None
    where, params = ["tenant = ?"], [tenant]
    if status is not None:
        where.append("status = ?")
        params.append(JobStatus(status).value)
    if batch_id is not None:
        where.append("batch_id = ?")
        params.append(batch_id)
    if cursor is not None:
        where.append(f"(created_at, id) {'>' if oldest_first else '<'} (?, ?)")
        params.extend(decode_cursor(cursor))
    order = "ASC" if oldest_first else "DESC"
    sql = f"SELECT data FROM jobs WHERE {' AND '.join(where)}"
    return f"{sql} ORDER BY created_at {order}, id {order} LIMIT ?", params


if TYPE_CHECKING:
    _satisfies_port: JobStore = SqliteJobStore("")
