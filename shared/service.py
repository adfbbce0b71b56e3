"""ChatService: the use cases behind the API (submit, get, wait, list, cancel, delete)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from contextlib import suppress

from shared.admission import Admission
from shared.errors import Conflict, NotFound, Overloaded, QueueUnavailable
from shared.intake import Intake, same_body
from shared.key_limits import KeyGate, KeyTicket
from shared.keys import Caller
from shared.lanes import lane_of
from shared.metrics import JobMetrics
from shared.model_catalog import ModelCatalog
from shared.models import (
    ChatRequest,
    Job,
    JobCreate,
    JobError,
    JobStatus,
    utcnow,
)
from shared.ports import JobFinished, JobQueue, JobStreams, JobWakeups, ResultCache, Store
from shared.transitions import JobOutcome, deletable
from shared.webhooks.hooks import WebhookHooks

log = logging.getLogger(__name__)

MAX_WAIT_S = 30.0
RECHECK_S = 1.0  # with JobWakeups, a long-poll still reads the store this often (a lost wake-up)


def cache_key(tenant: str, request: ChatRequest) -> str:
    """SHA-256 of the canonical JSON of everything that changes the answer, scoped to the tenant."""
    payload = {"tenant": tenant, **request.canonical()}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def body_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ChatService(Intake):
    def __init__(
        self,
        store: Store,
        cache: ResultCache | None,
        queue: JobQueue,
        hooks: WebhookHooks | None = None,
        on_finished: JobFinished | None = None,
        wakeups: JobWakeups | None = None,
        admission: Admission | None = None,
        models: ModelCatalog | None = None,
        metrics: JobMetrics | None = None,
        streams: JobStreams | None = None,
        gate: KeyGate | None = None,
    ) -> None:
        super().__init__(
            store, cache, queue, hooks, admission=admission, models=models, metrics=metrics,
            gate=gate,
        )  # fmt: skip
        self.on_finished = on_finished
        self.wakeups = wakeups
        self.streams = streams  # jobs' live events, for shared/answer_stream.py

    async def submit(
        self,
        tenant: str,
        body: JobCreate,
        idempotency_key: str | None = None,
        *,
        caller: Caller | None = None,
    ) -> Job:
        """Store the job and enqueue it, or answer it at once from the cache (`cached: true`).
        A replay (an Idempotency-Key used within 24 h) answers the job that key made, before
        anything else: a read is never refused for backpressure. `caller`: the key that sends
        it (its id and default priority go on the job, and its limits apply: KeyGate)."""
        caller = caller or Caller(tenant)
        job = self._new_job(caller, body, idempotency_key)
        if idempotency_key and (earlier := await self._made_by(tenant, idempotency_key)):
            self.metrics.jobs_submitted("replayed")
            return same_body(earlier, job)
        self.models.check(body.model)
        if body.webhook_url:
            await self.hooks.check_url(body.webhook_url)
        await self.gate.check_rates(caller)
        try:
            stored = await self._store_and_enqueue(job, caller)
        except (QueueUnavailable, Overloaded):
            self.metrics.jobs_submitted("rejected")
            raise
        if stored.id != job.id:
            self.metrics.jobs_submitted("replayed")
            return same_body(stored, job)
        self.metrics.jobs_submitted("cached" if stored.cached else "queued")
        return stored

    async def _made_by(self, tenant: str, idempotency_key: str) -> Job | None:
        job_id = await self.store.find_idempotent("job", tenant, idempotency_key)
        return await self.store.get_job(job_id, tenant) if job_id else None

    def _new_job(self, caller: Caller, body: JobCreate, idempotency_key: str | None) -> Job:
        request, tenant = body.chat_request(), caller.tenant
        return Job(
            tenant=tenant,
            key_id=caller.key_id,
            priority=caller.priority_for(body.priority),
            request=request,
            webhook_url=body.webhook_url,
            metadata=body.metadata,
            cache_key=cache_key(tenant, request) if body.cache else None,
            idempotency_key=idempotency_key,
            request_hash=body_hash(body) if idempotency_key else None,  # compared on replays
        )

    async def _store_and_enqueue(self, job: Job, caller: Caller) -> Job:
        hit = (await self.cached([job.cache_key])).get(job.cache_key or "")
        if hit is not None:
            job = self.answered(job, hit, utcnow())
        queued = int(hit is None)  # a cache hit counts as a request, with no tokens nor slot
        tokens = self.gate.estimate([job.request]) * queued
        ticket = await self.gate.admit(caller, requests=1, tokens=tokens, slots=queued)
        if ticket is not None:
            job = job.model_copy(update={"key_hold": ticket.hold_for(job)})
        held = job
        stored = await self.store_admitted(
            job, ticket, (queued, lane_of(job)), lambda: self.store.create_job(held)
        )
        if stored.id == job.id and stored.status is JobStatus.queued:
            await self._enqueue_or_fail(stored, ticket)
        return stored

    async def _enqueue_or_fail(self, job: Job, ticket: KeyTicket | None) -> None:
        try:
            await self.queue.enqueue(job.id, lane=lane_of(job))
        except QueueUnavailable:
            refused = JobOutcome(
                JobStatus.failed,
                expect=JobStatus.queued,
                error=JobError(code="queue_unavailable", message="the queue refused the job"),
                release_idempotency_key=True,  # a 503 must stay retryable with the same key
            )
            await self.writes.finish(job.id, refused)  # its end frees its slot and tokens
            await self.gate.refund_requests(ticket)
            raise

    async def get(self, tenant: str, job_id: str, wait_s: float = 0) -> Job:
        """The job; with `wait_s` (at most MAX_WAIT_S), hold until it is terminal or the wait
        is over."""
        return await self.wait_finished(tenant, job_id, min(wait_s, MAX_WAIT_S))

    async def wait_finished(self, tenant: str, job_id: str, wait_s: float) -> Job:
        """The job once it is terminal, or as it is when `wait_s` is over. With JobWakeups the
        job's end wakes the wait; without, the store is polled."""
        deadline = time.monotonic() + max(wait_s, 0.0)
        if self.wakeups is None or wait_s <= 0:
            return await self._poll(tenant, job_id, deadline)
        with self.wakeups.watch(job_id) as finished:  # before the read: no wake-up is missed
            while True:
                job = await self._read(tenant, job_id)
                left = deadline - time.monotonic()
                if job.status.is_terminal or left <= 0:
                    return job
                with suppress(TimeoutError):
                    async with asyncio.timeout(min(left, RECHECK_S)):
                        await finished.wait()

    async def _poll(self, tenant: str, job_id: str, deadline: float) -> Job:
        delay = 0.05
        while True:
            job = await self._read(tenant, job_id)
            if job.status.is_terminal or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 1.5, 0.5)

    async def _read(self, tenant: str, job_id: str) -> Job:
        job = await self.store.get_job(job_id, tenant)
        if job is None:
            raise NotFound(job_id)
        return job

    async def list(
        self,
        tenant: str,
        *,
        status: JobStatus | None,
        batch_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]:
        return await self.store.list_jobs(
            tenant, status=status, batch_id=batch_id, limit=limit, cursor=cursor
        )

    async def cancel(self, tenant: str, job_id: str) -> Job:
        """queued → cancelled; a running or finished job answers Conflict."""
        job = await self.store.get_job(job_id, tenant)
        if job is None:
            raise NotFound(job_id)
        cancel = JobOutcome(  # error None also clears the last attempt's "retrying" note
            JobStatus.cancelled,
            expect=JobStatus.queued,
            webhook=self.hooks.delivery_for(job.webhook_url),
        )
        cancelled = await self.writes.finish(job_id, cancel)
        if cancelled is None:
            current = await self.store.get_job(job_id, tenant)
            state = current.status if current else job.status
            raise Conflict(f"job is {state.value} and can no longer be cancelled")
        if self.on_finished is not None:
            await self.on_finished(cancelled)
        return cancelled

    async def retry(self, tenant: str, job_id: str) -> Job:
        """failed → queued, run again as if new (shared.transitions.retry_failed), for a single
        job; a batch's job goes through BatchService.retry_job. Another status answers
        Conflict; past MAX_QUEUED_JOBS, Overloaded with nothing changed."""
        job = await self._read(tenant, job_id)
        if job.status is not JobStatus.failed:
            raise Conflict(f"job is {job.status.value}: only a failed job can run again")
        await self.admission.admit(1)
        retried = await self.writes.retry_failed_job(job_id)
        if retried is None:
            current = await self._read(tenant, job_id)
            raise Conflict(f"job is {current.status.value}: only a failed job can run again")
        await self._enqueue_or_fail(retried, None)
        return retried

    async def delete(self, tenant: str, job_id: str) -> None:
        """Erase a job that has ended, with its result, and the cached answer its request made
        (cache keys are per tenant: only this tenant's entry goes; another job of the tenant
        keeps its own copy of the answer, and the next identical request calls the LLM again).
        The cache entry goes first, so if the cache fails nothing is erased and the call can be
        repeated. A queued or running job answers Conflict: cancel it, or let it end, first.
        Usage counters and a batch's counts keep counting it."""
        job = await self._read(tenant, job_id)
        if not deletable(job):
            raise Conflict(_not_deletable(job))
        if job.cache_key and self.cache is not None:
            await self.cache.delete(job.cache_key)
        if not await self.store.delete_job(job_id, tenant, expect=job.status):
            current = await self._read(tenant, job_id)  # NotFound if it went meanwhile
            raise Conflict(_not_deletable(current))


def _not_deletable(job: Job) -> str:
    if job.status is JobStatus.queued:
        return "job is queued: cancel it before deleting it"
    if job.status is JobStatus.running:
        return "job is running: delete it once it has ended"
    return f"job is {job.status.value} and changed while being deleted; try again"
