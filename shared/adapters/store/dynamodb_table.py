"""Compare-and-set reads and writes of job and batch items, for DynamoDbJobStore.

A job's change (shared.transitions) is decided on a consistent read of the record, and the write
replaces the item only while its `version` and `status` are still what was read; otherwise the
record is read again and the change reconsidered. So a redelivered or raced change finds a newer
version and is refused, exactly as a conditional UPDATE would refuse it. A job whose status
changes moves its batch's counters, and a job that ends moves its tenant's usage counters
(dynamodb_usage.py), in the same TransactWriteItems, so a write whose condition fails cannot
count twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import Enum
from typing import Any

from shared.adapters.store.dynamodb_calls import (
    bounded,
    condition_failed,
    conditional,
    expression,
    transact,
)
from shared.adapters.store.dynamodb_items import (
    OPTIONAL_ATTRS,
    PK,
    Item,
    StoredBatch,
    StoredJob,
    batch_attributes,
    batch_key,
    counter_deltas,
    idempotency_key,
    is_live,
    job_item,
    job_key,
    n,
    s,
    stored_batch,
    stored_job,
    utc,
)
from shared.adapters.store.dynamodb_key_counters import key_item_names, key_updates
from shared.adapters.store.dynamodb_usage import usage_updates
from shared.key_usage import merged, usage_rows
from shared.models import Batch, Job, JobStatus, utcnow
from shared.transitions import Change, Decision

BatchChange = Callable[[Batch], Batch | None]

# No batch is still being stored after this long (a Lambda runs for 15 minutes at most).
BATCH_WRITE_GRACE = timedelta(minutes=15)
MAX_TRIES = 10
TRANSACTION_ITEMS = 100  # DynamoDB's limit
# plus the batch's counter update and a usage counter update (more of those split a chunk)
TRANSACTION_JOBS = 98
TRANSACTION_BYTES = 3_000_000  # of DynamoDB's 4 MB per transaction


class Write(Enum):
    done = "done"
    stale = "stale"  # the item changed since it was read, or is gone: read it again
    refused = "refused"  # its batch item is not stored yet (the batch is still being created)


class ItemTable:
    def __init__(self, ddb: Any, table: str, retention: timedelta | None = None) -> None:
        self.ddb = ddb
        self.table = table
        self.retention = retention  # JOB_RETENTION_DAYS: the TTL of ended jobs and batches

    async def get(self, key: Item) -> Item | None:
        response = await self.ddb.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        item: Item | None = response.get("Item")
        return item if item is not None and is_live(item) else None

    async def read_job(self, job_id: str) -> StoredJob | None:
        item = await self.get(job_key(job_id))
        return stored_job(item) if item is not None else None

    async def read_batch(self, batch_id: str) -> StoredBatch | None:
        item = await self.get(batch_key(batch_id))
        return stored_batch(item) if item is not None else None

    async def put_new(self, item: Item, also: Sequence[Item] = ()) -> bool:
        """Put an item whose key is not taken; False when it is. `also`: unconditional writes
        (usage counter updates) made in the same transaction, so only with the item."""
        params = expression(ConditionExpression=f"attribute_not_exists(#{PK})")
        put = {"TableName": self.table, "Item": item, **params}
        if also:
            return await transact(self.ddb, [{"Put": put}, *also]) is None
        return await conditional(lambda: self.ddb.put_item(**put)) is not None

    async def change_job(self, job_id: str, decide: Decision) -> Change | None:
        """Read the job, decide, write; read again when another write got there first."""
        for _ in range(MAX_TRIES):
            old = await self.read_job(job_id)
            change = decide(old.job) if old is not None else None
            if old is None or change is None:
                return None
            written = await self.write_job(old, change)
            if written is not Write.stale:
                return change if written is Write.done else None
        raise RuntimeError(f"job {job_id} kept changing while being written")

    async def write_job(self, old: StoredJob, change: Change) -> Write:
        """Write `change` if the job is still stored as read, with its batch's counters, its
        usage and (when the change gives it back) its idempotency key's item."""
        ops = {"job": self._job_put(old, change.after)}
        if (counts := self._counter_update(change.after.batch_id, [change])) is not None:
            ops["counts"] = counts
        if change.released_key:
            ops["key"] = self._key_release(old.job)
        if change.usage is not None:
            for i, update in enumerate(usage_updates(self.table, [(change.after, change.usage)])):
                ops[f"usage{i}"] = update
        if change.key_deltas is not None:
            for i, update in enumerate(key_updates(self.table, change.key_deltas)):
                ops[f"api_key{i}"] = update
        while len(ops) > 1:
            reasons = await transact(self.ddb, list(ops.values()))
            if reasons is None:
                return Write.done
            failed = {
                name for name, reason in zip(ops, reasons, strict=True) if condition_failed(reason)
            }
            if "job" in failed:
                return Write.stale
            if "counts" in failed and utcnow() - utc(change.after.created_at) < BATCH_WRITE_GRACE:
                return Write.refused
            # an orphan of a batch never stored has nothing to count; a key held by another job
            # (after the 24 h window) is not ours to release
            ops = {name: op for name, op in ops.items() if name not in failed}
        put = ops["job"]["Put"]
        written = await conditional(lambda: self.ddb.put_item(**put))
        return Write.done if written is not None else Write.stale

    async def move_jobs(self, snapshots: list[StoredJob], decide: Decision) -> list[Change]:
        """Decide and write many jobs read moments ago: one transaction per chunk of a batch's
        jobs, which moves the batch's counters once. A chunk that meets a job changed since it
        was read falls back to writing its jobs one by one. Returns the changes written."""
        moved = await bounded(self._move_chunk(chunk, decide) for chunk in _chunks(snapshots))
        return [change for changes in moved for change in changes]

    async def _move_chunk(self, chunk: list[StoredJob], decide: Decision) -> list[Change]:
        pairs = [(old, change) for old in chunk if (change := decide(old.job)) is not None]
        written = [await self._move_pairs(part, decide) for part in _fitting(pairs)]
        return [change for changes in written for change in changes]

    async def _move_pairs(
        self, pairs: list[tuple[StoredJob, Change]], decide: Decision
    ) -> list[Change]:
        if not pairs:
            return []
        ops = [self._job_put(old, change.after) for old, change in pairs]
        changes = [change for _, change in pairs]
        if (counts := self._counter_update(changes[0].after.batch_id, changes)) is not None:
            ops.append(counts)
        ops += usage_updates(self.table, [(c.after, c.usage) for c in changes if c.usage])
        for deltas in merged(c.key_deltas for c in changes):
            ops += key_updates(self.table, deltas)
        if await transact(self.ddb, ops) is None:
            return changes
        one_by_one = await bounded(self.change_job(old.job.id, decide) for old, _ in pairs)
        return [change for change in one_by_one if change is not None]

    async def delete_job(self, job_id: str, tenant: str, expect: JobStatus) -> bool:
        """Delete the job while it is stored as read (its version) with status `expect`,
        with the item of the idempotency key it holds (left alone if another job holds it)."""
        for _ in range(MAX_TRIES):
            old = await self.read_job(job_id)
            if old is None or old.job.tenant != tenant or old.job.status is not expect:
                return False
            written = await self._delete_as_read(old)
            if written is not Write.stale:
                return written is Write.done
        raise RuntimeError(f"job {job_id} kept changing while being deleted")

    async def _delete_as_read(self, old: StoredJob) -> Write:
        condition = expression({":read": n(old.version)}, ConditionExpression="#version = :read")
        ops = {
            "job": {"Delete": {"TableName": self.table, "Key": job_key(old.job.id), **condition}}
        }
        if old.job.idempotency_key:
            ops["key"] = self._key_release(old.job)
        while True:
            reasons = await transact(self.ddb, list(ops.values()))
            if reasons is None:
                return Write.done
            failed = {name for name, r in zip(ops, reasons, strict=True) if condition_failed(r)}
            if "job" in failed or "key" not in ops:
                return Write.stale
            del ops["key"]  # the key is another job's now (its 24 h were over): not ours

    async def change_batch(self, batch_id: str, change: BatchChange) -> Batch | None:
        for _ in range(MAX_TRIES):
            old = await self.read_batch(batch_id)
            new = change(old.batch) if old is not None else None
            if old is None or new is None:
                return None
            if (written := await self.update_batch(old, new)) is not None:
                return written
        raise RuntimeError(f"batch {batch_id} kept changing while being written")

    async def update_batch(self, old: StoredBatch, new: Batch) -> Batch | None:
        """Write `new` over `old` if its version is unchanged (the counters, which job writes
        move, are left alone); the batch as now stored, or None."""
        attrs = batch_attributes(new, old.version + 1, self.retention)
        update = "SET " + ", ".join(f"#{name} = :{name}" for name in attrs)
        if removed := [name for name in OPTIONAL_ATTRS if name not in attrs]:
            update += " REMOVE " + ", ".join(f"#{name}" for name in removed)
        values = {f":{name}": value for name, value in attrs.items()} | {":read": n(old.version)}
        params = expression(values, UpdateExpression=update, ConditionExpression="#version = :read")
        response = await conditional(
            lambda: self.ddb.update_item(
                TableName=self.table, Key=batch_key(new.id), ReturnValues="ALL_NEW", **params
            )
        )
        return stored_batch(response["Attributes"]).batch if response is not None else None

    def _job_put(self, old: StoredJob, new: Job) -> Item:
        values = {":version": n(old.version), ":status": s(old.job.status.value)}
        condition = "#version = :version AND #status = :status"
        item = job_item(new, old.version + 1, self.retention)
        put = {
            "TableName": self.table,
            "Item": item,
            **expression(values, ConditionExpression=condition),
        }
        return {"Put": put}

    def _counter_update(self, batch_id: str | None, changes: Sequence[Change]) -> Item | None:
        deltas = counter_deltas(changes)
        if batch_id is None or not deltas:
            return None
        update = "ADD " + ", ".join(f"#{name} :{name}" for name in deltas)
        values = {f":{name}": n(delta) for name, delta in deltas.items()}
        params = expression(
            values, UpdateExpression=update, ConditionExpression=f"attribute_exists(#{PK})"
        )
        return {"Update": {"TableName": self.table, "Key": batch_key(batch_id), **params}}

    def _key_release(self, job: Job) -> Item:
        assert job.idempotency_key is not None
        key = idempotency_key("JOB", job.tenant, job.idempotency_key)
        condition = f"attribute_not_exists(#{PK}) OR #holder = :job"
        params = expression({":job": s(job.id)}, ConditionExpression=condition)
        return {"Delete": {"TableName": self.table, "Key": key, **params}}


def _fitting(pairs: list[tuple[StoredJob, Change]]) -> list[list[tuple[StoredJob, Change]]]:
    """`pairs` in parts that each fit one transaction with their batch's counter update and an
    update per counter item they move (usage rows: a batch's jobs may name many models; their
    key's counters)."""
    parts: list[list[tuple[StoredJob, Change]]] = [[]]
    keys: set[object] = set()
    for old, change in pairs:
        key = _items_moved(change)
        if parts[-1] and len(parts[-1]) + 2 + len(keys | key) > TRANSACTION_ITEMS:
            parts.append([])
            keys = set()
        parts[-1].append((old, change))
        keys |= key
    return parts


def _items_moved(change: Change) -> set[object]:
    """The counter items a change's write updates besides the job's: usage rows (its tenant's
    and its key's) and its key's counters."""
    usage = usage_rows(change.after, change.usage) if change.usage is not None else []
    return {key for key, _ in usage} | key_item_names(change.key_deltas)


def _chunks(snapshots: list[StoredJob]) -> list[list[StoredJob]]:
    """Transaction-sized chunks, each of one batch's jobs (or of jobs without a batch)."""
    groups: dict[str | None, list[StoredJob]] = {}
    for snapshot in snapshots:
        groups.setdefault(snapshot.job.batch_id, []).append(snapshot)
    chunks: list[list[StoredJob]] = []
    for group in groups.values():
        chunk: list[StoredJob] = []
        size = 0
        for snapshot in group:
            size += snapshot.size
            if chunk and (len(chunk) == TRANSACTION_JOBS or size > TRANSACTION_BYTES):
                chunks.append(chunk)
                chunk, size = [], snapshot.size
            chunk.append(snapshot)
        chunks.append(chunk)
    return chunks
