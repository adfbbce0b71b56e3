"""In-memory fakes at the ports. They keep real state so tests assert on state, not on calls."""

from __future__ import annotations

import asyncio
import base64
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from shared.admin_queries import BatchQuery, JobQuery, QueueBacklog, failing_first
from shared.dead_letters import REDRIVE_LIMIT, DeadLetterQueue, UnknownQueue
from shared.errors import Conflict, InvalidCursor, QueueUnavailable
from shared.job_stream import Delta, streamed
from shared.key_usage import KeyDeltas, KeyMonth, usage_rows
from shared.keys import ApiKeyRecord
from shared.lanes import Lane, current_lane
from shared.models import (
    Batch,
    BatchStatus,
    ChatRequest,
    Completion,
    Job,
    JobStatus,
    Usage,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.ports import IdempotentKind, JobHandler, JobRef
from shared.retention import expires_at
from shared.transitions import Change, Decision, created_usage
from shared.usage import UsageCounters, UsageKey

IDEMPOTENCY_WINDOW = timedelta(hours=24)
R = TypeVar("R", Job, Batch)


class FakeApiKeys:
    """The KeyStore port in memory (FakeJobStore's): records by id, found by either hash."""

    @property
    def api_keys(self) -> dict[str, ApiKeyRecord]:
        found: dict[str, ApiKeyRecord] = self.__dict__.setdefault("_api_keys", {})
        return found

    async def create_key(self, record: ApiKeyRecord) -> ApiKeyRecord:
        hashes = {h for k in self.api_keys.values() for h in (k.key_hash, k.previous_hash)}
        if record.id in self.api_keys or record.key_hash in hashes:
            raise Conflict(f"key {record.id} (or its secret's hash) exists already")
        self.api_keys[record.id] = record
        return record

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        return self.api_keys.get(key_id)

    async def find_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        now = utcnow()
        for record in self.api_keys.values():
            until = record.previous_valid_until
            in_grace = record.previous_hash == key_hash and until is not None and now < until
            if record.key_hash == key_hash or in_grace:
                return record
        return None

    async def list_keys(
        self, *, tenant: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[ApiKeyRecord], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = [k for k in self.api_keys.values() if tenant in (None, k.tenant)]
        rows.sort(key=lambda k: (k.created_at, k.id), reverse=True)
        if cursor is not None:
            try:
                created_at, _, key_id = base64.urlsafe_b64decode(cursor).decode().partition("|")
                after = (datetime.fromisoformat(created_at), key_id)
            except (ValueError, UnicodeError):
                raise InvalidCursor("invalid cursor") from None
            rows = [k for k in rows if (k.created_at, k.id) < after]
        page, more = rows[:limit], len(rows) > limit
        last = page[-1] if page else None
        raw = f"{last.created_at.isoformat()}|{last.id}" if last else ""
        return page, base64.urlsafe_b64encode(raw.encode()).decode() if more else None

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        record = self.api_keys.get(key_id)
        if record is None:
            return None
        if record.revoked_at is None:
            record = self.api_keys[key_id] = record.model_copy(update={"revoked_at": at})
        return record

    async def rotate_key(
        self,
        key_id: str,
        *,
        expect_hash: str,
        new_hash: str,
        new_prefix: str,
        previous_valid_until: datetime | None,
    ) -> ApiKeyRecord | None:
        record = self.api_keys.get(key_id)
        if record is None or record.key_hash != expect_hash or record.revoked_at is not None:
            return None
        rotated = record.model_copy(
            update={
                "key_hash": new_hash,
                "prefix": new_prefix,
                "previous_hash": expect_hash if previous_valid_until is not None else None,
                "previous_valid_until": previous_valid_until,
            }
        )
        self.api_keys[key_id] = rotated
        return rotated

    async def touch_key(self, key_id: str, at: datetime) -> None:
        record = self.api_keys.get(key_id)
        if record is not None and (record.last_used_at is None or record.last_used_at < at):
            self.api_keys[key_id] = record.model_copy(update={"last_used_at": at})


class FakeJobStore(FakeApiKeys):
    def __init__(self, retention: timedelta | None = None) -> None:
        self.retention = retention
        self.jobs: dict[str, Job] = {}
        self.batches: dict[str, Batch] = {}
        self.usage_counters: dict[UsageKey, UsageCounters] = {}
        self.coalescing_keys: dict[tuple[str, str], str] = {}
        self.job_followers: dict[str, set[str]] = {}
        self.key_counters = FakeKeyCounters()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def create_job(self, job: Job) -> Job:
        async with self._lock:
            earlier = self._idempotent_match(job)
            if earlier is not None:
                return earlier
            self.jobs[job.id] = job
            self._add_usage(job, created_usage(job))
            return job

    def _add_usage(self, job: Job, added: UsageCounters | None) -> None:
        if added is None:
            return
        for key, row in usage_rows(job, added):
            held = self.usage_counters.get(key)
            self.usage_counters[key] = held.plus(row) if held is not None else row

    async def usage(self, tenant: str, start: date, end: date) -> list[UsageCounters]:
        return [
            counters
            for key, counters in sorted(self.usage_counters.items())
            if key.tenant == tenant and start <= key.day <= end
        ]

    def _idempotent_match(self, job: Job) -> Job | None:
        if not job.idempotency_key:
            return None
        cutoff = utcnow() - IDEMPOTENCY_WINDOW
        for other in self.jobs.values():
            same = other.tenant == job.tenant and other.idempotency_key == job.idempotency_key
            if same and other.created_at > cutoff:
                return other
        return None

    async def find_idempotent(self, kind: IdempotentKind, tenant: str, key: str) -> str | None:
        records: list[Job | Batch] = [*(self.jobs if kind == "job" else self.batches).values()]
        cutoff = utcnow() - IDEMPOTENCY_WINDOW
        held = [
            r.id
            for r in records
            if r.tenant == tenant and r.idempotency_key == key and r.created_at > cutoff
        ]
        return held[0] if held else None

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            return None
        return job

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
        rows = [
            j
            for j in self.jobs.values()
            if j.tenant == tenant
            and (status is None or j.status == status)
            and (batch_id is None or j.batch_id == batch_id)
        ]
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows.sort(key=lambda j: (j.created_at, j.id), reverse=not oldest_first)
        if cursor is not None:  # keyset: resume after the last row seen, whatever changed since
            after = self._decode_cursor(cursor)
            rows = [
                j
                for j in rows
                if ((j.created_at, j.id) > after if oldest_first else (j.created_at, j.id) < after)
            ]
        page = rows[:limit]
        more = len(rows) > limit
        return page, self._encode_cursor(page[-1]) if more else None

    @staticmethod
    def _encode_cursor(record: Job | Batch) -> str:
        raw = f"{record.created_at.isoformat()}|{record.id}"
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode_cursor(cursor: str) -> tuple[datetime, str]:
        try:
            raw = base64.urlsafe_b64decode(cursor.encode()).decode()
            created_at, sep, job_id = raw.partition("|")
            after = datetime.fromisoformat(created_at)
        except (ValueError, UnicodeError):
            raise InvalidCursor("invalid cursor") from None
        if not sep or not job_id or after.tzinfo is None:
            raise InvalidCursor("invalid cursor")
        return after, job_id

    async def change_jobs(
        self, job_ids: Sequence[str], decide: Decision, *, durable: bool = True
    ) -> list[Change]:
        async with self._lock:
            changes = []
            for job_id in job_ids:
                job = self.jobs.get(job_id)
                change = decide(job) if job is not None else None
                if change is not None:
                    self._apply(change)
                    changes.append(change)
            return changes

    async def change_job(
        self, job_id: str, decide: Decision, *, durable: bool = True
    ) -> Change | None:
        changes = await self.change_jobs([job_id], decide)
        return changes[0] if changes else None

    def _apply(self, change: Change) -> None:
        job = change.after
        self.jobs[job.id] = job
        self._add_usage(job, change.usage)
        if change.key_deltas is not None:
            self.key_counters.move(change.key_deltas)
        batch = self.batches.get(job.batch_id) if job.batch_id else None
        if batch is not None and change.counter_deltas:
            counts = batch.counts.model_copy()
            for status, delta in change.counter_deltas.items():
                setattr(counts, status, getattr(counts, status) + delta)
            self.batches[batch.id] = batch.model_copy(update={"counts": counts})

    async def delete_job(self, job_id: str, tenant: str, *, expect: JobStatus) -> bool:
        async with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.tenant != tenant or job.status is not expect:
                return False
            del self.jobs[job_id]
            return True

    async def unfinished_jobs(
        self,
        *,
        limit: int = 10_000,
        updated_before: datetime | None = None,
        status: JobStatus | None = None,
    ) -> list[JobRef]:
        unfinished = (JobStatus.queued, JobStatus.running) if status is None else (status,)
        jobs = sorted(self.jobs.values(), key=lambda j: j.created_at)
        return [
            JobRef(j.id, j.batch_id, j.tenant, j.priority)
            for j in jobs
            if j.status in unfinished and (updated_before is None or j.updated_at < updated_before)
        ][:limit]

    async def count_unfinished(self) -> dict[JobStatus, int]:
        statuses = [j.status for j in self.jobs.values()]
        return {s: statuses.count(s) for s in (JobStatus.queued, JobStatus.running)}

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch:
        async with self._lock:
            earlier = self._batch_holding(batch)
            if earlier is not None:
                return earlier
            self.batches[batch.id] = batch
            for job in jobs:
                self.jobs[job.id] = job
                self._add_usage(job, created_usage(job))
            return batch

    def _batch_holding(self, batch: Batch) -> Batch | None:
        if not batch.idempotency_key:
            return None
        cutoff = utcnow() - IDEMPOTENCY_WINDOW
        for other in self.batches.values():
            same = other.tenant == batch.tenant and other.idempotency_key == batch.idempotency_key
            if same and other.created_at > cutoff:
                return other
        return None

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None:
        batch = self.batches.get(batch_id)
        if batch is None or (tenant is not None and batch.tenant != tenant):
            return None
        return batch

    async def list_batches(
        self, tenant: str, *, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = sorted(
            (b for b in self.batches.values() if b.tenant == tenant),
            key=lambda b: (b.created_at, b.id),
            reverse=True,
        )
        if cursor is not None:
            after = self._decode_cursor(cursor)
            rows = [b for b in rows if (b.created_at, b.id) < after]
        page = rows[:limit]
        return page, self._encode_cursor(page[-1]) if len(rows) > limit else None

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
        async with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.status not in expect:
                return None
            changes: dict[str, Any] = {"status": to}
            if reopen:
                changes |= {"completed_at": None, "webhook": None}
            if completed_at is not None:
                changes["completed_at"] = completed_at
            if webhook is not None:
                changes["webhook"] = webhook
            updated = batch.model_copy(update=changes)
            self.batches[batch_id] = updated
            return updated

    async def closable_batch_ids(self) -> list[str]:
        open_statuses = (BatchStatus.in_progress, BatchStatus.cancelling)
        return [
            b.id
            for b in self.batches.values()
            if b.status in open_statuses and b.counts.done >= b.counts.total
        ]

    async def set_webhook(
        self, subject_id: str, delivery: WebhookDelivery, *, expected: WebhookDelivery | None
    ) -> bool:
        subject = self.jobs.get(subject_id) or self.batches.get(subject_id)
        if subject is None or subject.webhook != expected:
            return False
        self._put_webhook(subject_id, delivery)
        return True

    def _put_webhook(self, subject_id: str, delivery: WebhookDelivery) -> None:
        if subject_id in self.jobs:
            self.jobs[subject_id] = self.jobs[subject_id].model_copy(update={"webhook": delivery})
        elif subject_id in self.batches:
            batch = self.batches[subject_id]
            self.batches[subject_id] = batch.model_copy(update={"webhook": delivery})

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        due: list[str] = []
        async with self._lock:
            subjects: list[Job | Batch] = [*self.jobs.values(), *self.batches.values()]
            for subject in subjects:
                hook = subject.webhook
                if hook is None or hook.state != WebhookState.pending or len(due) >= limit:
                    continue
                if hook.next_attempt_at is not None and hook.next_attempt_at <= now:
                    due.append(subject.id)
                    leased = hook.model_copy(update={"next_attempt_at": lease_until})
                    self._put_webhook(subject.id, leased)
        return due

    async def webhook_subject(self, subject_id: str) -> Job | Batch | None:
        return self.jobs.get(subject_id) or self.batches.get(subject_id)

    async def key_holder(self, tenant: str, cache_key: str) -> str | None:
        return self.coalescing_keys.get((tenant, cache_key))

    async def take_key(
        self, tenant: str, cache_key: str, job_id: str, *, replacing: str | None
    ) -> bool:
        async with self._lock:
            if self.coalescing_keys.get((tenant, cache_key)) != replacing:
                return False
            self.coalescing_keys[tenant, cache_key] = job_id
            return True

    async def release_key(self, tenant: str, cache_key: str, job_id: str) -> None:
        async with self._lock:
            if self.coalescing_keys.get((tenant, cache_key)) == job_id:
                del self.coalescing_keys[tenant, cache_key]

    async def add_follower(self, leader_id: str, follower_id: str) -> None:
        self.job_followers.setdefault(leader_id, set()).add(follower_id)

    async def followers(self, leader_id: str) -> list[str]:
        return sorted(self.job_followers.get(leader_id, ()))

    async def drop_followers(self, leader_id: str) -> None:
        self.job_followers.pop(leader_id, None)

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
        async with self._lock:
            return self.key_counters.reserve(
                key_id, month, requests, tokens, max_requests, max_tokens
            )

    async def unreserve(self, key_id: str, month: str, *, requests: int, tokens: int) -> None:
        async with self._lock:
            self.key_counters.unreserve(key_id, month, requests, tokens)

    async def key_month(self, key_id: str, month: str) -> KeyMonth:
        return self.key_counters.months.get((key_id, month), KeyMonth())

    async def mark_alerted(self, key_id: str, month: str, kind: str) -> bool:
        async with self._lock:
            return self.key_counters.mark_alerted(key_id, month, kind)

    async def enter(self, key_id: str, jobs: int, ceiling: int) -> bool:
        async with self._lock:
            return self.key_counters.enter(key_id, jobs, ceiling)

    async def in_flight(self, key_id: str) -> int:
        return self.key_counters.flights.get(key_id, 0)

    async def minute_tokens(self, key_id: str, minute: str) -> int:
        return self.key_counters.minutes.get((key_id, minute), 0)

    async def move_key_counters(self, deltas: KeyDeltas) -> None:
        async with self._lock:
            self.key_counters.move(deltas)

    async def purge_expired(self, limit: int) -> int:
        async with self._lock:
            now = utcnow()
            records: list[dict[str, Any]] = [self.jobs, self.batches]
            expired = [
                (held, key)
                for held in records
                for key, record in held.items()
                if (until := expires_at(record, self.retention)) is not None and until < now
            ][: max(limit, 0)]
            for held, key in expired:
                del held[key]
            return len(expired)

    # AdminStore: the operator's reads across tenants
    async def find_jobs(
        self, query: JobQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        rows = [j for j in self.jobs.values() if _matches(j, query)]
        return self._newest_page(rows, limit, cursor)

    async def find_batches(
        self, query: BatchQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        rows = [
            b
            for b in self.batches.values()
            if (query.tenant is None or b.tenant == query.tenant)
            and (query.status is None or b.status == query.status)
        ]
        return self._newest_page(rows, limit, cursor)

    def _newest_page(
        self, rows: Sequence[R], limit: int, cursor: str | None
    ) -> tuple[list[R], str | None]:
        ordered = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
        if cursor is not None:
            after = self._decode_cursor(cursor)
            ordered = [r for r in ordered if (r.created_at, r.id) < after]
        page = ordered[: max(limit, 1)]
        return page, self._encode_cursor(page[-1]) if len(ordered) > len(page) else None

    async def failing_webhooks(self, *, limit: int = 100) -> list[Job | Batch]:
        records: list[Job | Batch] = [*self.jobs.values(), *self.batches.values()]
        failing = [
            r
            for r in records
            if r.webhook is not None
            and (
                r.webhook.state is WebhookState.failed
                or (r.webhook.state is WebhookState.pending and r.webhook.attempts > 0)
            )
        ]
        return failing_first(failing)[:limit]

    async def queue_backlog(self) -> QueueBacklog:
        queued = [j for j in self.jobs.values() if j.status is JobStatus.queued]
        return QueueBacklog(
            queued_single=len([j for j in queued if j.batch_id is None]),
            queued_batch=len([j for j in queued if j.batch_id is not None]),
            running=len([j for j in self.jobs.values() if j.status is JobStatus.running]),
            oldest_queued_at=min((j.created_at for j in queued), default=None),
        )


def _matches(job: Job, query: JobQuery) -> bool:
    return (
        (query.tenant is None or job.tenant == query.tenant)
        and (query.status is None or job.status == query.status)
        and (query.batch_id is None or job.batch_id == query.batch_id)
        and (query.created_from is None or job.created_at >= query.created_from)
        and (query.created_to is None or job.created_at < query.created_to)
    )


class FakeKeyCounters:
    """Each key's counters in memory, with the rules of shared/key_usage.py (the store's lock
    makes every method one atomic step)."""

    def __init__(self) -> None:
        self.months: dict[tuple[str, str], KeyMonth] = {}
        self.flights: dict[str, int] = {}
        self.minutes: dict[tuple[str, str], int] = {}

    def reserve(
        self,
        key_id: str,
        month: str,
        requests: int,
        tokens: int,
        max_requests: int | None,
        max_tokens: int | None,
    ) -> KeyMonth | None:
        held = self.months.get((key_id, month), KeyMonth())
        if max_requests is not None and held.requests + requests > max_requests:
            return None
        if max_tokens is not None and held.tokens + tokens > max_tokens:
            return None
        return self._set(key_id, month, held.requests + requests, held.tokens + tokens)

    def unreserve(self, key_id: str, month: str, requests: int, tokens: int) -> None:
        held = self.months.get((key_id, month), KeyMonth())
        self._set(key_id, month, held.requests - requests, held.tokens - tokens)

    def mark_alerted(self, key_id: str, month: str, kind: str) -> bool:
        held = self.months.get((key_id, month), KeyMonth())
        if kind in held.alerted:
            return False
        self.months[(key_id, month)] = replace(held, alerted=held.alerted | {kind})
        return True

    def enter(self, key_id: str, jobs: int, ceiling: int) -> bool:
        if self.flights.get(key_id, 0) + jobs > ceiling:
            return False
        self.flights[key_id] = self.flights.get(key_id, 0) + jobs
        return True

    def move(self, deltas: KeyDeltas) -> None:
        key_id = deltas.key_id
        for month, tokens in deltas.months.items():
            held = self.months.get((key_id, month), KeyMonth())
            self._set(key_id, month, held.requests, held.tokens + tokens)
        if deltas.in_flight:
            self.flights[key_id] = self.flights.get(key_id, 0) + deltas.in_flight
        for minute, tokens in deltas.minutes.items():
            self.minutes[(key_id, minute)] = self.minutes.get((key_id, minute), 0) + tokens

    def _set(self, key_id: str, month: str, requests: int, tokens: int) -> KeyMonth:
        held = self.months.get((key_id, month), KeyMonth())
        self.months[(key_id, month)] = new = replace(held, requests=requests, tokens=tokens)
        return new


class FakeResultCache:
    def __init__(self) -> None:
        self.entries: dict[str, Completion] = {}

    async def get(self, key: str) -> Completion | None:
        return self.entries.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        return {k: self.entries[k] for k in keys if k in self.entries}

    async def set(self, key: str, value: Completion, ttl_s: int) -> None:
        self.entries[key] = value

    async def delete(self, key: str) -> None:
        self.entries.pop(key, None)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class FakeJobQueue:
    """Records what was enqueued; `drain()` runs the handler over it, like a burst worker."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.delays: dict[str, float] = {}
        self.lanes: dict[str, Lane] = {}  # the lane each job was last enqueued in
        self.handler: JobHandler | None = None
        self.refuse = False

    async def start(self, handler: JobHandler | None = None) -> None:
        self.handler = handler

    async def close(self) -> None:
        return None

    async def enqueue(self, job_id: str, delay_s: float = 0, lane: Lane | None = None) -> None:
        if self.refuse:
            raise QueueUnavailable("fake queue is refusing work")
        self.pending.append(job_id)
        self.delays[job_id] = delay_s
        self.lanes[job_id] = current_lane(lane)

    async def enqueue_many(
        self, job_ids: Sequence[str], group: str | None = None, lane: Lane | None = None
    ) -> None:
        for job_id in job_ids:
            await self.enqueue(job_id, lane=lane)

    async def ping(self) -> bool:
        return not self.refuse

    async def drain(self) -> int:
        ran = 0
        while self.pending and self.handler is not None:
            await self.handler(self.pending.pop(0))
            ran += 1
        return ran


class WholeAnswer(ABC):
    """An LLM fake's stream: complete()'s answer (or error) in one piece, so a fake that only
    says how it completes streams the same."""

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion: ...

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        async for delta in streamed(await self.complete(request)):
            yield delta


class FakeLLM(WholeAnswer):
    """Answers with the last user message reversed, or raises the queued errors first."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.errors: list[Exception] = []
        self.requests: list[ChatRequest] = []

    async def start(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        prompt = next(m.content for m in reversed(request.messages) if m.role == "user")
        return Completion(
            content=prompt[::-1],
            provider=self.name,
            model=request.model or f"{self.name}-model",
            usage=Usage(input_tokens=len(prompt.split()), output_tokens=len(prompt.split())),
            latency_ms=1,
        )

    async def close(self) -> None:
        return None


class FakeDeadLetters:
    """Dead-letter queues in memory: `dead[role]` holds the message bodies given up on,
    `sources[role]` what was redriven back."""

    has_queues = True

    def __init__(self, *roles: str) -> None:
        self.dead: dict[str, list[str]] = {role: [] for role in roles}
        self.sources: dict[str, list[str]] = {role: [] for role in roles}

    async def depths(self) -> list[DeadLetterQueue]:
        return [
            DeadLetterQueue(
                queue=role,
                source_queue=f"chatjobs-{role}",
                dead_letter_queue=f"chatjobs-{role}-dlq",
                messages=len(bodies),
                in_flight=0,
            )
            for role, bodies in self.dead.items()
        ]

    async def redrive(self, queue: str, limit: int = REDRIVE_LIMIT) -> int:
        if queue not in self.dead:
            raise UnknownQueue(queue, list(self.dead))
        moved, self.dead[queue] = self.dead[queue][:limit], self.dead[queue][limit:]
        self.sources[queue] += moved
        return len(moved)
