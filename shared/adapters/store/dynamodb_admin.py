"""DynamoDbJobStore's cross-tenant reads (the `AdminStore` port), all Queries of an index:

- jobs of a batch: `batch_jobs`; of a tenant: `tenant_jobs`; of everyone: `by_day`, one
  partition per UTC day (`J#<day>`, `B#<day>` for batches), walked from the newest day back;
- failing webhooks: `due_webhooks`' `FAILED` partition and its due shards (pending again after a
  failed attempt);
- the backlog: counts of the `unfinished` index, and the open batches' queued counters.

A listing reads every sort key `<created_at ISO>#<id>` newest first between the query's time
bounds; other filters (status, tenant) are FilterExpressions, except on `by_day`, which is keys
only (a job's status changes never rewrite its entry there): its listings read each page's
records and check status and expiry on them (`newest` returns those records). One call reads at
most READ_BUDGET
items and MAX_QUERIES queries: a page may then come back short, with a cursor. The cursor is the
sort key where reading stopped (base64url JSON `["a1", key]`), so it resumes there whatever the
index (a day's partition is found from the key's date).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from shared.adapters.aws import names
from shared.adapters.store.dynamodb_calls import batch_get, expression, query_items
from shared.adapters.store.dynamodb_items import (
    BATCH_JOBS,
    BY_DAY,
    DUE_WEBHOOKS,
    FAILED_WEBHOOKS,
    OPEN_BATCHES,
    PK,
    SK,
    TENANT_BATCHES,
    TENANT_JOBS,
    UNFINISHED,
    Item,
    all_shards,
    day_partition,
    is_live,
    iso,
    s,
    stored_batch,
    stored_job,
)
from shared.admin_queries import READ_BUDGET, BatchQuery, JobQuery, QueueBacklog, failing_first
from shared.errors import InvalidCursor
from shared.models import Batch, Job, JobStatus, WebhookState, utcnow

CURSOR_TAG = "a1"
MAX_QUERIES = 60  # Queries one listing call makes at most (empty days cost one each)
HORIZON_DAYS = 400  # with no `created_from` and no retention, days walked back at most
LOWEST, HIGHEST = "0", "9"  # below and above every ISO sort key


@dataclass
class Listing:
    """What to read: index partitions newest first, key bounds, filters."""

    index: str
    partitions: Iterator[str]
    low: str
    high: str
    filters: dict[str, tuple[str, str]] = field(default_factory=dict)  # attr → (op, value)


def encode_cursor(sort_key: str) -> str:
    raw = json.dumps([CURSOR_TAG, sort_key], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        tag, sort_key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        valid = tag == CURSOR_TAG and isinstance(sort_key, str)
        if valid:
            date.fromisoformat(sort_key[:10])
    except (binascii.Error, ValueError, TypeError, UnicodeError, RecursionError):
        valid = False
    if not valid:
        raise InvalidCursor("this cursor was not made by this listing")
    return str(sort_key)


def _bounds(
    created_from: datetime | None, created_to: datetime | None, cursor: str | None
) -> tuple[str, str]:
    high = iso(created_to) if created_to is not None else HIGHEST
    if cursor is not None:
        high = min(high, decode_cursor(cursor))
    return (iso(created_from) if created_from is not None else LOWEST), high


def _days(kind: str, low: str, high: str, retention: timedelta | None) -> Iterator[str]:
    today = utcnow().date()
    last = today if high == HIGHEST else min(date.fromisoformat(high[:10]), today)
    horizon = today - (retention or timedelta(days=HORIZON_DAYS)) - timedelta(days=1)
    first = max(date.fromisoformat(low[:10]), horizon) if low != LOWEST else horizon
    day = last
    while day >= first:
        yield day_partition(kind, day)
        day -= timedelta(days=1)


def job_listing(query: JobQuery, cursor: str | None, retention: timedelta | None) -> Listing:
    low, high = _bounds(query.created_from, query.created_to, cursor)
    filters = {}
    if query.status is not None:
        filters["status"] = ("=", query.status.value)
    if query.batch_id is not None:  # the batch's tenant is checked by the store
        return Listing(BATCH_JOBS, iter([query.batch_id]), low, high, filters)
    if query.tenant is not None:
        return Listing(TENANT_JOBS, iter([query.tenant]), low, high, filters)
    return Listing(BY_DAY, _days("J", low, high, retention), low, high, filters)


def batch_listing(query: BatchQuery, cursor: str | None, retention: timedelta | None) -> Listing:
    low, high = _bounds(None, None, cursor)
    filters = {"status": ("=", query.status.value)} if query.status is not None else {}
    if query.tenant is not None:
        return Listing(TENANT_BATCHES, iter([query.tenant]), low, high, filters)
    return Listing(BY_DAY, _days("B", low, high, retention), low, high, filters)


def _params(table: str, listing: Listing, partition: str, page: int) -> dict[str, Any]:
    hash_attr, range_attr = names.INDEXES[listing.index]
    values: Item = {":p": s(partition), ":low": s(listing.low), ":high": s(listing.high)}
    parts = {
        "KeyConditionExpression": f"#{hash_attr} = :p AND #{range_attr} BETWEEN :low AND :high"
    }
    conditions = []
    filters = {} if _on_records(listing) else listing.filters
    for i, (attr, (op, value)) in enumerate(sorted(filters.items())):
        conditions.append(f"#{attr} {op} :f{i}")
        values[f":f{i}"] = s(value)
    if conditions:
        parts["FilterExpression"] = " AND ".join(conditions)
    return {
        "TableName": table,
        "IndexName": listing.index,
        "ScanIndexForward": False,
        "Limit": page,
        **expression(values, **parts),
    }


def _on_records(listing: Listing) -> bool:
    """True when the index projects none of the filters' attributes (nor the TTL): the listing
    checks them on the records it reads from the table."""
    return listing.index == BY_DAY


def _matches(item: Item, filters: dict[str, tuple[str, str]]) -> bool:
    """A record passes the listing's filters (all `=`, as _params would send them)."""
    return all(item.get(attr, {}).get("S") == value for attr, (_, value) in filters.items())


async def newest(
    ddb: Any, table: str, listing: Listing, limit: int
) -> tuple[list[Item], str | None]:
    """Up to `limit` items newest first, and the sort key to resume below (None: no more).
    On a keys-only listing (_on_records) the items are the records, filtered and live."""
    _, range_attr = names.INDEXES[listing.index]
    page = limit + 1 if not listing.filters else max(limit + 1, 200)
    found: list[Item] = []
    read = queries = 0
    for partition in listing.partitions:
        params = _params(table, listing, partition, page)
        while True:
            if read >= READ_BUDGET or queries >= MAX_QUERIES:
                return found, _resume_at(params, listing, partition)
            answer = await ddb.query(**params)
            queries, read = queries + 1, read + int(answer.get("ScannedCount", 0))
            items = answer.get("Items", [])
            if _on_records(listing):
                read_back = await records(ddb, table, items)
                items = [i for i in read_back if _matches(i, listing.filters)]
            for item in items:
                key = item[range_attr]["S"]
                if key == listing.high or not is_live(item):
                    continue
                found.append(item)
                if len(found) > limit:
                    return found[:limit], found[limit - 1][range_attr]["S"]
            if "LastEvaluatedKey" not in answer:
                break
            params["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    return found, None


def _resume_at(params: dict[str, Any], listing: Listing, partition: str) -> str:
    """Where a listing stopped by its budget goes on: after the last key read in this
    partition, or (nothing read in it yet) at the end of the day it holds."""
    _, range_attr = names.INDEXES[listing.index]
    start = params.get("ExclusiveStartKey")
    if start is not None:
        return str(start[range_attr]["S"])
    if listing.index == BY_DAY:  # all of that day: '~' sorts after every key of the day
        return min(listing.high, partition.split("#", 1)[1] + "~")
    return listing.high


async def records(ddb: Any, table: str, index_items: list[Item]) -> list[Item]:
    """The records index entries name, read from the table in the entries' order (indexes
    project little of them: names.INDEX_PROJECTIONS); records gone since are left out."""
    if all("data" in item for item in index_items):
        return index_items  # records already (newest read them on a keys-only listing)
    keys = [{PK: item[PK], SK: item[SK]} for item in index_items]
    return await batch_get(ddb, table, keys) if keys else []


async def jobs_of(ddb: Any, table: str, items: list[Item], query: JobQuery) -> list[Job]:
    jobs = [stored_job(item).job for item in await records(ddb, table, items)]
    # the index said so a moment ago: the record has the last word
    return [j for j in jobs if query.status is None or j.status == query.status]


async def batches_of(ddb: Any, table: str, items: list[Item], query: BatchQuery) -> list[Batch]:
    batches = [stored_batch(item).batch for item in await records(ddb, table, items)]
    return [b for b in batches if query.status is None or b.status == query.status]


def _subject(item: Item) -> Job | Batch:
    if item[names.PARTITION_KEY]["S"].startswith("JOB#"):
        return stored_job(item).job
    return stored_batch(item).batch


async def failing_webhooks(ddb: Any, table: str, limit: int) -> list[Job | Batch]:
    """The `FAILED` partition, and the pending deliveries of the due shards whose record shows a
    failed attempt (the index is keys-only: records are read from the table)."""
    gave_up = Listing(DUE_WEBHOOKS, iter([FAILED_WEBHOOKS]), LOWEST, "~")
    pending = [Listing(DUE_WEBHOOKS, iter([sh]), LOWEST, HIGHEST) for sh in all_shards("DUE")]
    found = await asyncio.gather(*(newest(ddb, table, x, limit) for x in [gave_up, *pending]))
    entries = [item for items, _ in found for item in items]
    subjects = [_subject(item) for item in await records(ddb, table, entries)]
    failing = [
        s
        for s in subjects
        if s.webhook is not None
        and (
            s.webhook.state is WebhookState.failed
            or (s.webhook.state is WebhookState.pending and s.webhook.attempts > 0)
        )
    ]
    return failing_first(failing)[:limit]


async def queue_backlog(ddb: Any, table: str, counts: dict[JobStatus, int]) -> QueueBacklog:
    hash_attr, _ = names.INDEXES[UNFINISHED]
    open_batches = {
        "TableName": table,
        "IndexName": UNFINISHED,
        **expression({":p": s(OPEN_BATCHES)}, KeyConditionExpression=f"#{hash_attr} = :p"),
    }
    entries = [item async for item in query_items(ddb, open_batches)]
    in_batches = sum(
        stored_batch(item).batch.counts.queued for item in await records(ddb, table, entries)
    )
    oldest = await asyncio.gather(*(_oldest_queued(ddb, table, sh) for sh in all_shards("JOB")))
    queued = counts[JobStatus.queued]
    return QueueBacklog(
        queued_single=max(queued - in_batches, 0),
        queued_batch=min(in_batches, queued),
        running=counts[JobStatus.running],
        oldest_queued_at=min((at for at in oldest if at is not None), default=None),
    )


async def _oldest_queued(ddb: Any, table: str, shard: str) -> datetime | None:
    """The first queued job of a shard of `unfinished` (ordered by when each last changed)."""
    hash_attr, _ = names.INDEXES[UNFINISHED]
    params = {
        "TableName": table,
        "IndexName": UNFINISHED,
        "Limit": 100,
        **expression(
            {":p": s(shard), ":queued": s(JobStatus.queued.value)},
            KeyConditionExpression=f"#{hash_attr} = :p",
            FilterExpression="#status = :queued",
        ),
    }
    async for item in query_items(ddb, params):
        found = await records(ddb, table, [item])
        return stored_job(found[0]).job.created_at if found else None
    return None
