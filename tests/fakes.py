"""In-memory fakes at the ports. They keep real state so tests assert on state, not on calls."""

from __future__ import annotations

import asyncio
import base64
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from shared.admin_queries import BatchQuery, JobQuery, QueueBacklog, failing_first
from shared.errors import InvalidCursor, QueueUnavailable
from shared.job_stream import Delta, streamed
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
from shared.usage import UsageCounters, UsageKey, usage_key

IDEMPOTENCY_WINDOW = timedelta(hours=24)
R = TypeVar("R", Job, Batch)


class FakeJobStore:
    def __init__(self, retention: timedelta | None = None) -> None:
        self.retention = retention
        self.jobs: dict[str, Job] = {}
        self.batches: dict[str, Batch] = {}
        self.usage_counters: dict[UsageKey, UsageCounters] = {}
        self.coalescing_keys: dict[tuple[str, str], str] = {}
        self.job_followers: dict[str, set[str]] = {}
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
        if added is not None:
            key = usage_key(job)
            held = self.usage_counters.get(key)
            self.usage_counters[key] = held.plus(added) if held is not None else added

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
            JobRef(j.id, j.batch_id)
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

    async def set_webhook(self, subject_id: str, delivery: WebhookDelivery) -> None:
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
                    await self.set_webhook(subject.id, leased)
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
        self.handler: JobHandler | None = None
        self.refuse = False

    async def start(self, handler: JobHandler | None = None) -> None:
        self.handler = handler

    async def close(self) -> None:
        return None

    async def enqueue(self, job_id: str, delay_s: float = 0) -> None:
        if self.refuse:
            raise QueueUnavailable("fake queue is refusing work")
        self.pending.append(job_id)
        self.delays[job_id] = delay_s

    async def enqueue_many(self, job_ids: Sequence[str], group: str | None = None) -> None:
        for job_id in job_ids:
            await self.enqueue(job_id)

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
