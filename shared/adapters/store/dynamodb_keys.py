"""Idempotency keys for DynamoDbJobStore.

A key is an item of its own, `IDEM#<JOB|BATCH>#<tenant>#<key>`, naming the job or batch that
holds it, with a TTL 24 h after that record's creation. It is taken by a conditional Put that
succeeds only while no live holder has it: a job takes it in the same transaction that creates
the job; a batch takes it before writing its jobs (see DynamoDbJobStore.create_batch).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.store.dynamodb_calls import condition_failed, conditional, expression, transact
from shared.adapters.store.dynamodb_items import (
    PK,
    TTL,
    Item,
    idempotency_item,
    idempotency_key,
    job_item,
    n,
    s,
)
from shared.adapters.store.dynamodb_table import BATCH_WRITE_GRACE, MAX_TRIES, ItemTable
from shared.adapters.store.dynamodb_usage import usage_updates
from shared.errors import Conflict
from shared.models import Batch, Job
from shared.transitions import created_usage

BATCH_KEY_WAIT = timedelta(seconds=20)  # a retry waits this long for the batch holding its key


def reservation(
    table: str, kind: str, tenant: str, key: str, holder: str, created_at: datetime
) -> Item:
    """A Put of a key's item that succeeds only while no live holder has the key."""
    item = idempotency_item(kind, tenant, key, holder, created_at)
    condition = f"attribute_not_exists(#{PK}) OR #{TTL} < :now"
    params = expression({":now": n(int(time.time()))}, ConditionExpression=condition)
    return {"Put": {"TableName": table, "Item": item, **params}}


async def release(db: ItemTable, key: Item, holder: str) -> None:
    """Delete a key's item if `holder` still holds it."""
    params = expression({":holder": s(holder)}, ConditionExpression="#holder = :holder")
    await conditional(lambda: db.ddb.delete_item(TableName=db.table, Key=key, **params))


async def create_keyed_job(db: ItemTable, job: Job, key: str) -> Job:
    """The job and its key's item in one transaction (with the usage counters of a job stored
    already answered); when the key is held, the earlier job."""
    absent = expression(ConditionExpression=f"attribute_not_exists(#{PK})")
    create = {"Put": {"TableName": db.table, "Item": job_item(job, 1, db.retention), **absent}}
    reserve = reservation(db.table, "JOB", job.tenant, key, job.id, job.created_at)
    usage = created_usage(job)
    counted = usage_updates(db.table, [(job, usage)] if usage is not None else [])
    for _ in range(MAX_TRIES):
        reasons = await transact(db.ddb, [reserve, create, *counted])
        if reasons is None:
            return job
        if condition_failed(reasons[1]):
            raise Conflict(f"job {job.id} already exists")
        held = await db.get(idempotency_key("JOB", job.tenant, key))
        earlier = await db.read_job(held["holder"]["S"]) if held else None
        if earlier is not None:
            return earlier.job
    raise RuntimeError(f"idempotency key of job {job.id} kept changing hands")


async def reserve_batch_key(db: ItemTable, batch: Batch, key: str) -> Batch | None:
    """None once the key is reserved for `batch`; else the batch holding it. A holder still
    being stored is waited for (up to BATCH_KEY_WAIT); one whose writer died is replaced."""
    reserve: dict[str, Any] = reservation(
        db.table, "BATCH", batch.tenant, key, batch.id, batch.created_at
    )["Put"]
    key_item = idempotency_key("BATCH", batch.tenant, key)
    deadline = time.monotonic() + BATCH_KEY_WAIT.total_seconds()
    for attempt in range(MAX_TRIES * 10):
        if await conditional(lambda: db.ddb.put_item(**reserve)) is not None:
            return None
        held = await db.get(key_item)
        if held is None:
            continue  # released or expired meanwhile: reserve again
        earlier = await db.read_batch(held["holder"]["S"])
        if earlier is not None:
            return earlier.batch
        if time.time() - int(held["reserved_at"]["N"]) > BATCH_WRITE_GRACE.total_seconds():
            await release(db, key_item, held["holder"]["S"])  # its writer died
        elif time.monotonic() < deadline:
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        else:
            break
    raise Conflict("a batch with this idempotency key is still being stored")
