"""DynamoDbJobStore: the Store ports on one DynamoDB table (single-table design).

Items, keys and indexes: dynamodb_items.py. Status changes are decided by shared.transitions and
written by compare-and-set, with what moves with them (batch counters, usage counters, a released
idempotency key, the API key's counters) in the same transaction (dynamodb_table.py,
dynamodb_usage.py, dynamodb_key_counters.py).
Idempotency keys: dynamodb_keys.py. Query parameters and the
listing cursor: dynamodb_queries.py. Run-time API keys: dynamodb_api_keys.py. Nothing here scans
the table: every read is a GetItem or a Query of the table or of an index. Index reads are
eventually consistent, so a sweep may see a job as it was a moment ago; every write re-checks the
record it changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing, suppress
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.store import dynamodb_admin as admin
from shared.adapters.store import dynamodb_coalescing as coalescing
from shared.adapters.store import dynamodb_key_counters as key_counters
from shared.adapters.store.dynamodb_api_keys import DynamoDbApiKeys
from shared.adapters.store.dynamodb_calls import (
    batch_get,
    batch_write,
    bounded,
    count,
    merged,
    query_items,
    transact,
)
from shared.adapters.store.dynamodb_changes import (
    is_due,
    marked,
    webhook_leased,
    with_webhook,
)
from shared.adapters.store.dynamodb_items import (
    BATCH_JOBS,
    DUE_WEBHOOKS,
    OPEN_BATCHES,
    PK,
    SK,
    TENANT_BATCHES,
    TENANT_JOBS,
    UNFINISHED,
    Item,
    all_shards,
    batch_item,
    before,
    idempotency_key,
    job_item,
    job_key,
    s,
    stored_batch,
    stored_job,
    subject_id_of,
    up_to,
)
from shared.adapters.store.dynamodb_keys import create_keyed_job, release, reserve_batch_key
from shared.adapters.store.dynamodb_queries import (
    BATCH_CURSOR_TAG,
    batch_list_query,
    index_cursor,
    index_query,
    list_query,
)
from shared.adapters.store.dynamodb_table import TRANSACTION_ITEMS, ItemTable, Write
from shared.adapters.store.dynamodb_usage import merged_shards, usage_query, usage_updates
from shared.admin_queries import BatchQuery, JobQuery, QueueBacklog
from shared.errors import Conflict
from shared.key_usage import KeyDeltas, KeyMonth
from shared.lanes import priority_or_default
from shared.models import (
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    WebhookDelivery,
)
from shared.ports import IdempotentKind, JobRef
from shared.transitions import Change, Decision, created_usage
from shared.usage import UsageCounters

if TYPE_CHECKING:
    from shared.ports import Store

SHARD_PAGE = 1_000  # items per Query page when merging shards


class DynamoDbJobStore(DynamoDbApiKeys):
    def __init__(
        self, clients: AwsClients, table: str, *, retention: timedelta | None = None
    ) -> None:
        self._clients = clients
        self.table = table
        self.retention = retention  # JOB_RETENTION_DAYS: the TTL of ended jobs and batches
        self._items: ItemTable | None = None

    async def start(self) -> None:
        """Take the process's DynamoDB client. The table is made by setup or Terraform."""
        if self._items is None:
            ddb = await self._clients.client("dynamodb")
            self._items = ItemTable(ddb, self.table, self.retention)

    async def close(self) -> None:
        self._items = None  # the client is the process's: AwsClients closes it

    @property
    def _db(self) -> ItemTable:
        if self._items is None:
            raise RuntimeError("DynamoDbJobStore.start() has not been called")
        return self._items

    async def ping(self) -> bool:
        try:
            await self._db.get({PK: s("PING"), SK: s("PING")})
        except Exception:
            return False
        return True

    # jobs

    async def create_job(self, job: Job) -> Job:
        if job.idempotency_key:
            return await create_keyed_job(self._db, job, job.idempotency_key)
        counted = usage_updates(self.table, created_usages([job]))
        if not await self._db.put_new(job_item(job, 1, self.retention), also=counted):
            raise Conflict(f"job {job.id} already exists")
        return job

    async def find_idempotent(self, kind: IdempotentKind, tenant: str, key: str) -> str | None:
        """The key's item (dynamodb_keys.py), read consistently; an expired one is not live."""
        held = await self._db.get(idempotency_key(kind.upper(), tenant, key))
        return str(held["holder"]["S"]) if held is not None else None

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        stored = await self._db.read_job(job_id)
        if stored is None or tenant not in (None, stored.job.tenant):
            return None
        return stored.job

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
        by_batch = batch_id is not None
        params = list_query(
            self.table,
            batch_id if batch_id is not None else tenant,
            by_batch=by_batch,
            status=status,
            cursor=cursor,
            oldest_first=oldest_first,
            limit=limit,
        )
        if batch_id is not None and await self.get_batch(batch_id, tenant) is None:
            return [], None  # another tenant's batch, or one not (yet) stored
        found, more = await self._page(params, limit)
        jobs = [stored_job(item).job for item in await self._fetch(found)]
        if status is not None:  # the index said so a moment ago: the record has the last word
            jobs = [job for job in jobs if job.status == status]
        index = BATCH_JOBS if by_batch else TENANT_JOBS
        return jobs, index_cursor(found[-1], index) if more else None

    async def change_job(
        self, job_id: str, decide: Decision, *, durable: bool = True
    ) -> Change | None:
        return await self._db.change_job(job_id, decide)  # every DynamoDB write is durable

    async def change_jobs(
        self, job_ids: Sequence[str], decide: Decision, *, durable: bool = True
    ) -> list[Change]:
        """Read the jobs (consistent reads, in parallel), then write them in transactions of a
        batch's jobs with their counters (ItemTable.move_jobs)."""
        read = await bounded(self._db.read_job(job_id) for job_id in job_ids)
        return await self._db.move_jobs([job for job in read if job is not None], decide)

    async def delete_job(self, job_id: str, tenant: str, *, expect: JobStatus) -> bool:
        """The job item and its idempotency key's item, in one transaction (ItemTable)."""
        return await self._db.delete_job(job_id, tenant, expect)

    async def unfinished_jobs(
        self,
        *,
        limit: int = 10_000,
        updated_before: datetime | None = None,
        status: JobStatus | None = None,
    ) -> list[JobRef]:
        if limit < 1:
            return []
        # The sort key is when the job was queued (a claim keeps it), so it bounds the entries
        # read; the projected `updated_at` says which of them have not changed since.
        below = before(updated_before) if updated_before is not None else None
        page = min(limit, SHARD_PAGE)
        sources = [
            query_items(
                self._db.ddb,
                self._query(
                    UNFINISHED, shard, below=below, page=page, status=status, changed_before=below
                ),
            )
            for shard in all_shards("JOB")
        ]
        items = await merged(sources, key=lambda item: item["gsi_unfinished_sk"]["S"], limit=limit)
        return [
            JobRef(
                subject_id_of(i),
                i["batch_id"]["S"] if "batch_id" in i else None,
                i["gsi_tenant"]["S"],
                priority_or_default(i.get("priority", {}).get("S")),
            )
            for i in items
        ]

    async def count_unfinished(self) -> dict[JobStatus, int]:
        """Select=COUNT per shard and status: reads only the sparse index of unfinished jobs."""
        statuses = (JobStatus.queued, JobStatus.running)
        queries = [
            (st, self._query(UNFINISHED, sh, status=st))
            for st in statuses
            for sh in all_shards("JOB")
        ]
        counted = await asyncio.gather(*(count(self._db.ddb, params) for _, params in queries))
        totals = dict.fromkeys(statuses, 0)
        for (status, _), number in zip(queries, counted, strict=True):
            totals[status] += number
        return totals

    # batches

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch:
        """Store the jobs (BatchWriteItem, 25 a call, several calls at once), then the batch.

        Up to 50,000 jobs cannot be one transaction (DynamoDB allows 100 items), so the order
        is what keeps a half-written batch harmless:
        - the batch item is written last, so get_batch, a batch's job listing and
          closable_batch_ids see nothing of a batch until all its jobs are stored;
        - the jobs are enqueued only after this returns, and until BATCH_WRITE_GRACE has passed a
          job whose batch item is missing cannot change status (its counter update needs the
          batch item; claim answers None), so counts never miss a move;
        - on an error the jobs written are deleted and the idempotency key is released.
        Crash window: if the process dies between the first job write and the batch item, the
        jobs written stay, without a batch. They are listed among the tenant's jobs, and once
        BATCH_WRITE_GRACE has passed a sweep may run them as jobs of their own (nothing counts
        them). The idempotency key stays reserved: a retry with it waits BATCH_KEY_WAIT for the
        batch and then gets Conflict, until the grace has passed; after that it takes the key
        over and stores a new batch.

        Jobs stored already answered (cache hits) count in the usage counters in the transaction
        that writes the batch item. Should they need more than TRANSACTION_ITEMS - 1 counter
        items (cache hits of that many distinct models), the rest follow in transactions of
        their own just after, and a crash in between leaves those uncounted.
        """
        if batch.idempotency_key:
            earlier = await reserve_batch_key(self._db, batch, batch.idempotency_key)
            if earlier is not None:
                return earlier
        counted = usage_updates(self.table, created_usages(jobs))
        first, rest = counted[: TRANSACTION_ITEMS - 1], counted[TRANSACTION_ITEMS - 1 :]
        try:
            # 50,000 dumps would hold the loop
            requests = await asyncio.to_thread(_put_requests, jobs, self.retention)
            await batch_write(self._db.ddb, self.table, requests)
            if not await self._db.put_new(batch_item(batch, 1, self.retention), also=first):
                raise Conflict(f"batch {batch.id} already exists")
        except Exception:
            await self._undo_batch(batch, jobs)
            raise
        for start in range(0, len(rest), TRANSACTION_ITEMS):
            await transact(self._db.ddb, rest[start : start + TRANSACTION_ITEMS])
        return batch

    async def _undo_batch(self, batch: Batch, jobs: Sequence[Job]) -> None:
        with suppress(Exception):
            deletes = [{"DeleteRequest": {"Key": job_key(job.id)}} for job in jobs]
            await batch_write(self._db.ddb, self.table, deletes)
        if batch.idempotency_key:
            with suppress(Exception):
                key = idempotency_key("BATCH", batch.tenant, batch.idempotency_key)
                await release(self._db, key, batch.id)

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None:
        stored = await self._db.read_batch(batch_id)
        if stored is None or tenant not in (None, stored.batch.tenant):
            return None
        return stored.batch

    async def list_batches(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        """One Query of the tenant_batches index, newest first (like the job listing, an index
        read: a change may show a moment late)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        found, more = await self._page(batch_list_query(self.table, tenant, cursor, limit), limit)
        batches = [stored_batch(item).batch for item in await self._fetch(found)]
        return batches, index_cursor(found[-1], TENANT_BATCHES, BATCH_CURSOR_TAG) if more else None

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
        return await self._db.change_batch(
            batch_id, lambda batch: marked(batch, expect, to, completed_at, webhook, reopen)
        )

    async def closable_batch_ids(self) -> list[str]:
        open_batches = await self._collect(self._query(UNFINISHED, OPEN_BATCHES))
        batches = [stored_batch(item).batch for item in await self._fetch(open_batches)]
        return [batch.id for batch in batches if batch.counts.done >= batch.counts.total]

    # webhooks

    async def set_webhook(
        self, subject_id: str, delivery: WebhookDelivery, *, expected: WebhookDelivery | None
    ) -> bool:
        """Pinned to the item's version as read, like every change here: a delivery that
        changed between the read and the write is read again, and compared again."""
        for kind in _kinds(subject_id):
            if kind == "job":
                changed: Change | Batch | None = await self._db.change_job(
                    subject_id,
                    lambda job: with_webhook(job, delivery) if job.webhook == expected else None,
                )
            else:
                changed = await self._db.change_batch(
                    subject_id,
                    lambda batch: (
                        batch.model_copy(update={"webhook": delivery})
                        if batch.webhook == expected
                        else None
                    ),
                )
            if changed is not None:
                return True
        return False

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        """Take up to `limit` due deliveries. Each is leased by a write pinned to the version read,
        so of two sweepers only one takes it; the loser goes on to the next due ones."""
        won: list[str] = []
        tried: set[str] = set()
        while len(won) < limit:
            due = await self._due(now, limit - len(won) + len(tried))
            fresh = [item for item in due if subject_id_of(item) not in tried][: limit - len(won)]
            if not fresh:
                break
            tried.update(subject_id_of(item) for item in fresh)
            leased = await bounded(self._lease_webhook(item, now, lease_until) for item in fresh)
            won += [subject_id_of(item) for item, ok in zip(fresh, leased, strict=True) if ok]
        return won

    async def _due(self, now: datetime, limit: int) -> list[Item]:
        sources = [
            query_items(
                self._db.ddb, self._query(DUE_WEBHOOKS, shard, below=up_to(now), page=limit)
            )
            for shard in all_shards("DUE")
        ]
        return await merged(sources, key=lambda item: item["gsi_webhook_sk"]["S"], limit=limit)

    async def _lease_webhook(self, item: Item, now: datetime, lease_until: datetime) -> bool:
        """Lease the delivery of the record the (keys-only) index entry names, as now stored:
        only if it is still due (another sweeper may have leased it since the index was read)."""
        subject_id = subject_id_of(item)
        if item[PK]["S"].startswith("JOB#"):
            old = await self._db.read_job(subject_id)
            if old is None or old.job.webhook is None or not is_due(old.job.webhook, now):
                return False
            leased = with_webhook(old.job, webhook_leased(old.job.webhook, lease_until))
            return await self._db.write_job(old, leased) is Write.done
        stored = await self._db.read_batch(subject_id)
        if stored is None or stored.batch.webhook is None or not is_due(stored.batch.webhook, now):
            return False
        hook = webhook_leased(stored.batch.webhook, lease_until)
        return (
            await self._db.update_batch(stored, stored.batch.model_copy(update={"webhook": hook}))
            is not None
        )

    async def webhook_subject(self, subject_id: str) -> Job | Batch | None:
        for kind in _kinds(subject_id):
            found = await (
                self.get_job(subject_id) if kind == "job" else self.get_batch(subject_id)
            )
            if found is not None:
                return found
        return None

    # coalescing (dynamodb_coalescing.py)

    async def key_holder(self, tenant: str, cache_key: str) -> str | None:
        return await coalescing.key_holder(self._db, tenant, cache_key)

    async def take_key(
        self, tenant: str, cache_key: str, job_id: str, *, replacing: str | None
    ) -> bool:
        return await coalescing.take_key(self._db, tenant, cache_key, job_id, replacing)

    async def release_key(self, tenant: str, cache_key: str, job_id: str) -> None:
        await coalescing.release_key(self._db, tenant, cache_key, job_id)

    async def add_follower(self, leader_id: str, follower_id: str) -> None:
        await coalescing.add_follower(self._db, leader_id, follower_id)

    async def followers(self, leader_id: str) -> list[str]:
        return await coalescing.followers(self._db, leader_id)

    async def drop_followers(self, leader_id: str) -> None:
        await coalescing.drop_followers(self._db, leader_id)

    # retention

    async def purge_expired(self, limit: int) -> int:
        """Nothing to do: ended jobs and batches carry a TTL (dynamodb_items.expiry), DynamoDB
        deletes them within a few days of it, and every read hides them from it on."""
        return 0

    # usage

    async def usage(self, tenant: str, start: date, end: date) -> list[UsageCounters]:
        """One Query of the tenant's USAGE# partition: counter items only."""
        params = usage_query(self.table, tenant, start, end)
        return merged_shards([item async for item in query_items(self._db.ddb, params)])

    # AdminStore: the operator's reads across tenants (dynamodb_admin.py)

    async def find_jobs(
        self, query: JobQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        listing = admin.job_listing(query, cursor, self.retention)
        batch_id, tenant = query.batch_id, query.tenant
        if batch_id and tenant and await self.get_batch(batch_id, tenant) is None:
            return [], None  # another tenant's batch
        items, position = await admin.newest(self._db.ddb, self.table, listing, max(limit, 1))
        jobs = await admin.jobs_of(self._db.ddb, self.table, items, query)
        return jobs, admin.encode_cursor(position) if position else None

    async def find_batches(
        self, query: BatchQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        listing = admin.batch_listing(query, cursor, self.retention)
        items, position = await admin.newest(self._db.ddb, self.table, listing, max(limit, 1))
        batches = await admin.batches_of(self._db.ddb, self.table, items, query)
        return batches, admin.encode_cursor(position) if position else None

    async def failing_webhooks(self, *, limit: int = 100) -> list[Job | Batch]:
        return await admin.failing_webhooks(self._db.ddb, self.table, limit)

    async def queue_backlog(self) -> QueueBacklog:
        counts = await self.count_unfinished()
        return await admin.queue_backlog(self._db.ddb, self.table, counts)

    # key counters (dynamodb_key_counters.py)

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
        return await key_counters.reserve(
            self._db, key_id, month, requests, tokens, max_requests, max_tokens
        )

    async def unreserve(self, key_id: str, month: str, *, requests: int, tokens: int) -> None:
        await key_counters.unreserve(self._db, key_id, month, requests, tokens)

    async def key_month(self, key_id: str, month: str) -> KeyMonth:
        return await key_counters.key_month(self._db, key_id, month)

    async def mark_alerted(self, key_id: str, month: str, kind: str) -> bool:
        return await key_counters.mark_alerted(self._db, key_id, month, kind)

    async def enter(self, key_id: str, jobs: int, ceiling: int) -> bool:
        return await key_counters.enter(self._db, key_id, jobs, ceiling)

    async def in_flight(self, key_id: str) -> int:
        return await key_counters.in_flight(self._db, key_id)

    async def minute_tokens(self, key_id: str, minute: str) -> int:
        return await key_counters.minute_tokens(self._db, key_id, minute)

    async def move_key_counters(self, deltas: KeyDeltas) -> None:
        await key_counters.move(self._db, deltas)

    # helpers

    def _query(self, index: str, partition: str, **options: Any) -> dict[str, Any]:
        return index_query(self.table, index, partition, **options)

    async def _page(self, params: dict[str, Any], limit: int) -> tuple[list[Item], bool]:
        """Up to `limit` items of a listing, and whether there are more (one read past it)."""
        found: list[Item] = []
        async with aclosing(query_items(self._db.ddb, params)) as items:
            async for item in items:
                found.append(item)
                if len(found) > limit:
                    break
        return found[:limit], len(found) > limit

    async def _fetch(self, index_items: list[Item]) -> list[Item]:
        """The records index entries name, read from the table (indexes project little of
        them: names.INDEX_PROJECTIONS); records gone since are left out."""
        keys = [{PK: item[PK], SK: item[SK]} for item in index_items]
        return await batch_get(self._db.ddb, self.table, keys) if keys else []

    async def _collect(self, params: dict[str, Any]) -> list[Item]:
        return [item async for item in query_items(self._db.ddb, params)]


def created_usages(jobs: Sequence[Job]) -> list[tuple[Job, UsageCounters]]:
    """What storing these jobs adds to usage (cache hits count as they are stored)."""
    return [(job, usage) for job in jobs if (usage := created_usage(job)) is not None]


def _put_requests(jobs: Sequence[Job], retention: timedelta | None) -> list[Item]:
    return [{"PutRequest": {"Item": job_item(job, 1, retention)}} for job in jobs]


def _kinds(subject_id: str) -> tuple[str, str]:
    """Where to look for a webhook subject first: ids say job_… or batch_…."""
    return ("batch", "job") if subject_id.startswith("batch_") else ("job", "batch")


if TYPE_CHECKING:
    _satisfies_port: Store = DynamoDbJobStore(AwsClients(), names.TABLE)
