"""Items of DynamoDbJobStore's single table: keys, attribute maps, and the way back to models.

A job or batch item keeps its record as pydantic JSON in `data` (compressed: `packed`,
dynamodb_packing.py), plus copies of only what conditions, indexes and counters read (`version`,
`status`, the index keys, `batch_id`, the TTL): every byte is paid on each of a job's writes.
Timestamps in key attributes are fixed-width UTC ISO text, so string order is time order. Every
write raises the item's `version` by one, and writers compare-and-set on it (see dynamodb.py).
Index attributes are present only while they apply, so the sparse indexes `unfinished` and
`due_webhooks` hold only what sweeps look for. A job or batch that has ended carries the TTL
attribute (JOB_RETENTION_DAYS after it ended, shared/retention.py); one that may still change
carries none.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from shared.adapters.aws import names
from shared.adapters.store.dynamodb_packing import packed, unpacked
from shared.keys import DEFAULT_PRIORITY
from shared.models import (
    Batch,
    BatchCounts,
    BatchStatus,
    Job,
    JobStatus,
    WebhookDelivery,
    WebhookState,
)
from shared.retention import expires_at

if TYPE_CHECKING:
    from shared.transitions import Change

Item = dict[str, Any]  # attribute name -> {"S": ...} | {"N": ...}

PK, SK, TTL = names.PARTITION_KEY, names.SORT_KEY, names.TTL_ATTRIBUTE
TENANT_JOBS, BATCH_JOBS, TENANT_BATCHES, UNFINISHED, DUE_WEBHOOKS, BY_DAY = (
    "tenant_jobs",
    "batch_jobs",
    "tenant_batches",
    "unfinished",
    "due_webhooks",
    "by_day",
)
FAILED_WEBHOOKS = "FAILED"  # the due_webhooks partition of deliveries that gave up (few)
SHARDS = 8  # key values per sparse index: spreads its writes over partitions (see shard_of)
OPEN_BATCHES = "BATCH"  # the `unfinished` partition of open batches (few: not sharded)
IDEMPOTENCY_WINDOW = timedelta(hours=24)
COUNTS = tuple(BatchCounts.model_fields)  # total, queued, running, succeeded, failed, cancelled
# an unfinished job's last change, projected in `unfinished` (the sweep's "unchanged since")
UPDATED_AT = "updated_at"
# present only while they apply: the sparse indexes' keys, and the TTL of an ended record
OPTIONAL_ATTRS = (
    *(a for index in (UNFINISHED, DUE_WEBHOOKS) for a in names.INDEXES[index]),
    TTL,
)
UNFINISHED_STATUSES = frozenset({JobStatus.queued, JobStatus.running})
OPEN_STATUSES = frozenset({BatchStatus.in_progress, BatchStatus.cancelling})


class StoredJob(NamedTuple):
    job: Job
    version: int
    size: int  # bytes of its JSON, to keep transactions under DynamoDB's 4 MB
    unfinished_sk: str | None = None  # its entry's sort key in `unfinished`, while it has one


class StoredBatch(NamedTuple):
    batch: Batch
    version: int


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def utc(value: datetime) -> datetime:
    """Naive datetimes count as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """Fixed-width UTC text that sorts like the instant."""
    return utc(value).isoformat(timespec="microseconds")


def sort_key(at: datetime, subject_id: str) -> str:
    return f"{iso(at)}#{subject_id}"


def before(at: datetime) -> str:
    """Upper bound (exclusive) for sort keys of instants before `at`."""
    return iso(at)


def up_to(at: datetime) -> str:
    """Upper bound (exclusive) for sort keys of instants up to and including `at`:
    '$' sorts just after the '#' that ends the timestamp in every sort key."""
    return iso(at) + "$"


def shard_of(prefix: str, subject_id: str) -> str:
    """One of SHARDS key values for a sparse index. With one value, every job's index entry
    would share one partition, whose write ceiling (~1,000 WCU/s) every status change of every
    job counts against; readers query the shards in parallel and merge."""
    return f"{prefix}#{zlib.crc32(subject_id.encode()) % SHARDS}"


def all_shards(prefix: str) -> list[str]:
    return [f"{prefix}#{i}" for i in range(SHARDS)]


def job_key(job_id: str) -> Item:
    return {PK: s(f"JOB#{job_id}"), SK: s("JOB")}


def batch_key(batch_id: str) -> Item:
    return {PK: s(f"BATCH#{batch_id}"), SK: s("BATCH")}


def idempotency_key(kind: str, tenant: str, key: str) -> Item:
    """Quoted parts: a '#' inside a tenant or key cannot make two tenants' keys collide."""
    return {PK: s(f"IDEM#{kind}#{quote(tenant, safe='')}#{quote(key, safe='')}"), SK: s("IDEM")}


def subject_id_of(item: Item) -> str:
    return str(item[PK]["S"]).split("#", 1)[1]


def is_live(item: Item, now: float | None = None) -> bool:
    """False once the item's TTL has passed: DynamoDB deletes expired items late."""
    ttl = item.get(TTL)
    return ttl is None or int(ttl["N"]) > (time.time() if now is None else now)


def expiry(record: Job | Batch, retention: timedelta | None) -> Item:
    """The TTL attribute of a record that has ended (none while it may change, or no retention)."""
    expires = expires_at(record, retention)
    return {TTL: n(int(utc(expires).timestamp()))} if expires is not None else {}


def job_item(
    job: Job, version: int, retention: timedelta | None, unfinished_sk: str | None = None
) -> Item:
    """`unfinished_sk`: the sort key the job's `unfinished` entry has now. A running job keeps
    it (the time it was queued), so its claim rewrites the entry in place (1 write unit) instead
    of moving it (a delete and a put); `updated_at`, projected, says when it last changed."""
    item: Item = {
        **job_key(job.id),
        "data": packed(job.model_dump_json()),
        "version": n(version),
        "status": s(job.status.value),
        "gsi_tenant": s(job.tenant),
        "gsi_tenant_sk": s(sort_key(job.created_at, job.id)),  # also by_day's sort key
        **day_keys("J", job.created_at),
    }
    if job.batch_id is not None:
        item["batch_id"] = s(job.batch_id)  # batch_jobs' key, with gsi_tenant_sk
    if job.priority != DEFAULT_PRIORITY:  # the sweeps' JobRef lane, with gsi_tenant (projected)
        item["priority"] = s(job.priority)
    if job.status in UNFINISHED_STATUSES:
        kept = unfinished_sk if job.status is JobStatus.running else None
        item["gsi_unfinished"] = s(shard_of("JOB", job.id))
        item["gsi_unfinished_sk"] = s(kept or sort_key(job.updated_at, job.id))
        item[UPDATED_AT] = s(iso(job.updated_at))
    return item | _due_webhook(job.id, job.webhook) | expiry(job, retention)


def stored_job(item: Item) -> StoredJob:
    data = unpacked(item["data"])
    since = item.get("gsi_unfinished_sk")
    return StoredJob(
        Job.model_validate_json(data),
        int(item["version"]["N"]),
        len(data),
        str(since["S"]) if since is not None else None,
    )


def batch_attributes(batch: Batch, version: int, retention: timedelta | None) -> Item:
    """Everything of a batch item but its key and counters (which job writes move)."""
    item: Item = {
        "data": packed(batch.model_dump_json(exclude={"counts"})),
        "version": n(version),
        "status": s(batch.status.value),
        "gsi_batch_tenant": s(batch.tenant),
        "gsi_batch_tenant_sk": s(sort_key(batch.created_at, batch.id)),
        **day_keys("B", batch.created_at),
        # by_day's sort key (a job's own gsi_tenant_sk); a batch has no gsi_tenant or batch_id,
        # so it never enters tenant_jobs or batch_jobs
        "gsi_tenant_sk": s(sort_key(batch.created_at, batch.id)),
    }
    if batch.status in OPEN_STATUSES:
        item["gsi_unfinished"] = s(OPEN_BATCHES)
        item["gsi_unfinished_sk"] = s(sort_key(batch.created_at, batch.id))
    return item | _due_webhook(batch.id, batch.webhook) | expiry(batch, retention)


def batch_item(batch: Batch, version: int, retention: timedelta | None) -> Item:
    counters = {f"c_{name}": n(getattr(batch.counts, name)) for name in COUNTS}
    return {**batch_key(batch.id), **batch_attributes(batch, version, retention), **counters}


def stored_batch(item: Item) -> StoredBatch:
    counts = BatchCounts(**{name: int(item[f"c_{name}"]["N"]) for name in COUNTS})
    batch = Batch.model_validate_json(unpacked(item["data"])).model_copy(update={"counts": counts})
    return StoredBatch(batch, int(item["version"]["N"]))


def counter_deltas(changes: Sequence[Change]) -> dict[str, int]:
    """Net change of each counter attribute for these changes; zero deltas left out."""
    deltas: dict[str, int] = {}
    for change in changes:
        for status, delta in change.counter_deltas.items():
            deltas[f"c_{status}"] = deltas.get(f"c_{status}", 0) + delta
    return {name: delta for name, delta in deltas.items() if delta}


def idempotency_item(kind: str, tenant: str, key: str, holder: str, created_at: datetime) -> Item:
    expires = created_at + IDEMPOTENCY_WINDOW
    return {
        **idempotency_key(kind, tenant, key),
        "holder": s(holder),
        "reserved_at": n(int(time.time())),
        TTL: n(int(utc(expires).timestamp())),
    }


def day_partition(kind: str, day: date) -> str:
    """The by_day partition of a kind's (`J` jobs, `B` batches) records created on `day`."""
    return f"{kind}#{day.isoformat()}"


def day_keys(kind: str, created_at: datetime) -> Item:
    """by_day's partition key; its sort key is the record's gsi_tenant_sk (created_at#id)."""
    return {"gsi_day": s(day_partition(kind, utc(created_at).date()))}


def _due_webhook(subject_id: str, hook: WebhookDelivery | None) -> Item:
    if hook is not None and hook.state is WebhookState.failed:
        return {"gsi_webhook": s(FAILED_WEBHOOKS), "gsi_webhook_sk": s(subject_id)}
    if hook is None or hook.state is not WebhookState.pending or hook.next_attempt_at is None:
        return {}
    return {
        "gsi_webhook": s(shard_of("DUE", subject_id)),
        "gsi_webhook_sk": s(sort_key(hook.next_attempt_at, subject_id)),
    }
