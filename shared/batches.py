"""BatchService: many prompts as one batch: one bulk write, one pipelined enqueue, exact counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from shared.admission import Admission
from shared.batch_jobs import BatchJobs, BatchPlan
from shared.coalescing import Coalescing
from shared.errors import Conflict, NotFound, Overloaded, QueueUnavailable
from shared.intake import Intake, same_body
from shared.key_limits import KeyGate, KeyTicket
from shared.keys import Caller, Priority
from shared.lanes import lane_of
from shared.metrics import JobMetrics
from shared.model_catalog import ModelCatalog
from shared.models import (
    Batch,
    BatchCounts,
    BatchItem,
    BatchStatus,
    Completion,
    Job,
    JobError,
    JobStatus,
    utcnow,
)
from shared.ports import JobQueue, ResultCache, Store
from shared.webhooks.hooks import WebhookHooks

log = logging.getLogger(__name__)

PAGE = 500


class BatchService(Intake):
    def __init__(
        self,
        store: Store,
        cache: ResultCache | None,
        queue: JobQueue,
        hooks: WebhookHooks | None = None,
        admission: Admission | None = None,
        models: ModelCatalog | None = None,
        metrics: JobMetrics | None = None,
        coalescing: Coalescing | None = None,
        gate: KeyGate | None = None,
    ) -> None:
        super().__init__(
            store, cache, queue, hooks, admission=admission, models=models, metrics=metrics,
            gate=gate,
        )  # fmt: skip
        self.coalescing = coalescing

    async def create(
        self,
        tenant: str,
        items: Sequence[BatchItem],
        *,
        webhook_url: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        batch_id: str | None = None,
        priority: Priority | None = None,
        caller: Caller | None = None,
    ) -> Batch:
        """Store the batch and its jobs in one write, answer cache hits, enqueue the rest.

        `items` may be read lazily (a few passes, one request at a time): the jobs are built as
        the store writes them (shared/batch_jobs.py), never all held at once.

        With `idempotency_key`: the same key within 24 h returns the batch it made (Conflict when
        `request_hash` differs), and nothing new is stored or run. That replay is looked up
        first: a read is never refused for backpressure.

        `batch_id`: the id to give it (the OpenAI dialect's time-ordered ids), else a new one.
        `caller`: the key that sends it; its id, and `priority` or the key's default, go on
        every job."""
        caller = caller or Caller(tenant)
        batch = Batch(
            key_id=caller.key_id,
            priority=caller.priority_for(priority),
            **({"id": batch_id} if batch_id else {}),
            tenant=tenant,
            webhook_url=webhook_url,
            metadata=metadata or {},
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        if idempotency_key and (earlier := await self._made_by(tenant, idempotency_key)):
            self.metrics.jobs_submitted("replayed", earlier.counts.total)
            return same_body(earlier, batch)
        # tens of microseconds a request: 50,000 of them would hold the event loop for seconds
        plan = await asyncio.to_thread(BatchPlan.of, tenant, items, self.models)
        for url in {u for u in (webhook_url, *plan.webhook_urls) if u}:
            await self.hooks.check_url(url)
        await self.gate.check_rates(caller)  # one submission for the key's rpm
        hits = await self.cached(plan.cache_keys)
        queued = plan.queued_ids(hits)
        batch.counts = BatchCounts(
            total=len(plan.ids), queued=len(queued), succeeded=len(plan.ids) - len(queued)
        )
        default = self.gate.token_estimate
        tokens = sum(t or default for t in plan.queued_max_tokens(hits))
        # every request counts, and the batch is refused whole if they do not all fit
        ticket = await self.gate.admit(
            caller, requests=len(plan.ids), tokens=tokens, slots=len(queued)
        )
        hold = ticket.hold_for if ticket is not None else None
        jobs = BatchJobs(batch, items, plan, hits, self._answered, hold)
        try:
            stored = await self._store_and_enqueue(batch, jobs, queued, ticket)
        except (QueueUnavailable, Overloaded):
            self.metrics.jobs_submitted("rejected", len(plan.ids))
            raise
        if stored.id != batch.id:  # this key made a batch already: that one is the answer
            self.metrics.jobs_submitted("replayed", stored.counts.total)
            return same_body(stored, batch)
        self.metrics.jobs_submitted("queued", len(queued))
        self.metrics.jobs_submitted("cached", len(plan.ids) - len(queued))
        return await self.check_completed(batch.id) or batch

    async def _made_by(self, tenant: str, idempotency_key: str) -> Batch | None:
        batch_id = await self.store.find_idempotent("batch", tenant, idempotency_key)
        return await self.store.get_batch(batch_id, tenant) if batch_id else None

    async def _store_and_enqueue(
        self, batch: Batch, jobs: BatchJobs, queued: list[str], ticket: KeyTicket | None
    ) -> Batch:
        stored = await self.store_admitted(
            batch,
            ticket,
            (len(queued), lane_of(batch)),
            lambda: self.store.create_batch(batch, jobs),
        )
        if stored.id == batch.id and queued:
            await self._enqueue_or_fail(batch, queued, ticket)
        return stored

    def _answered(self, job: Job, hit: Completion) -> Job:
        return self.answered(job, hit, job.created_at)

    async def _enqueue_or_fail(
        self, batch: Batch, job_ids: list[str], ticket: KeyTicket | None
    ) -> None:
        try:
            await self.queue.enqueue_many(job_ids, group=batch.id, lane=lane_of(batch))
        except QueueUnavailable:
            error = JobError(code="queue_unavailable", message="the queue refused the batch")
            # the jobs' ends free their slots and tokens; the requests are given back here
            await self.writes.end_queued(batch.id, JobStatus.failed, error)
            await self.gate.refund_requests(ticket)
            # Closed without a webhook: the caller was answered 503, not given this batch.
            await self.store.mark_batch(
                batch.id,
                expect=[BatchStatus.in_progress],
                to=BatchStatus.completed,
                completed_at=utcnow(),
            )
            raise

    async def get(self, tenant: str, batch_id: str) -> Batch:
        batch = await self.store.get_batch(batch_id, tenant)
        if batch is None:
            raise NotFound(batch_id)
        return batch

    async def list(
        self, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Batch], str | None]:
        """The tenant's batches, newest first, a page at a time."""
        return await self.store.list_batches(tenant, limit=limit, cursor=cursor)

    async def cancel(self, tenant: str, batch_id: str) -> Batch:
        """Cancel every job of the batch that is still queued; running ones finish. A batch
        that has ended answers Conflict, as a job that has ended does."""
        batch = await self.get(tenant, batch_id)
        if batch.status in (BatchStatus.completed, BatchStatus.cancelled):
            raise Conflict(f"batch is {batch.status.value} and can no longer be cancelled")
        await self.store.mark_batch(
            batch_id, expect=[BatchStatus.in_progress], to=BatchStatus.cancelling
        )
        cancelled = await self.writes.end_queued_jobs(batch_id, JobStatus.cancelled)
        if self.coalescing is not None:  # a job waiting for a retry may have had followers
            for job in cancelled:
                if job.attempts:  # only a job a worker has taken leads
                    await self.coalescing.leader_ended(job)
        return await self.check_completed(batch_id) or await self.get(tenant, batch.id)

    async def retry_failed(self, tenant: str, batch_id: str) -> Batch:
        """Run the batch's failed jobs again (shared.transitions.retry_failed says how each job
        and its usage move), in the batch's group; a completed batch reopens and fires
        `batch.completed` again when it next completes. A batch with no failed job is answered
        unchanged (so a repeat is harmless); a cancelled or cancelling one answers Conflict.
        Past MAX_QUEUED_JOBS: Overloaded, with nothing changed. If the queue refuses, the jobs
        stay queued in the store and a sweep (or the embedded restart) enqueues them."""
        batch = await self.get(tenant, batch_id)
        if batch.status in (BatchStatus.cancelling, BatchStatus.cancelled):
            raise Conflict(f"batch is {batch.status.value}: its failed jobs cannot run again")
        if batch.counts.failed == 0:
            return batch
        await self.admission.admit(batch.counts.failed, lane_of(batch))
        retried = await self.writes.retry_failed(batch_id)
        if retried:
            await self.store.mark_batch(
                batch_id, expect=[BatchStatus.completed], to=BatchStatus.in_progress, reopen=True
            )
            await self.queue.enqueue_many(retried, group=batch_id, lane=lane_of(batch))
        # jobs may all have ended again before the batch reopened: close it now if so
        return await self.check_completed(batch_id) or await self.get(tenant, batch_id)

    async def retry_job(self, tenant: str, batch_id: str, job_id: str) -> Job:
        """One failed job of the batch runs again, as `retry_failed` runs them all."""
        batch = await self.get(tenant, batch_id)
        if batch.status in (BatchStatus.cancelling, BatchStatus.cancelled):
            raise Conflict(f"batch is {batch.status.value}: its failed jobs cannot run again")
        job = await self.store.get_job(job_id, tenant)
        if job is None or job.batch_id != batch_id:
            raise NotFound(job_id)
        if job.status is not JobStatus.failed:
            raise Conflict(f"job is {job.status.value}: only a failed job can run again")
        await self.admission.admit(1)
        retried = await self.writes.retry_failed_job(job_id)
        if retried is None:
            raise Conflict("job is no longer failed: only a failed job can run again")
        await self.store.mark_batch(
            batch_id, expect=[BatchStatus.completed], to=BatchStatus.in_progress, reopen=True
        )
        await self.queue.enqueue_many([job_id], group=batch_id, lane=lane_of(batch))
        await self.check_completed(batch_id)
        return retried

    async def close_finished(self) -> int:
        """Close batches whose completion check was missed (a crash between a job's last write
        and the check); returns how many were closed."""
        closed = [await self.check_completed(b) for b in await self.store.closable_batch_ids()]
        return len([c for c in closed if c is not None])

    async def check_completed(self, batch_id: str) -> Batch | None:
        """Close the batch once every job is terminal (a compare-and-set: it closes only once)."""
        batch = await self.store.get_batch(batch_id)
        if batch is None or batch.counts.done < batch.counts.total:
            return None
        final = (
            BatchStatus.cancelled
            if batch.status is BatchStatus.cancelling
            else BatchStatus.completed
        )
        return await self.store.mark_batch(
            batch_id,
            expect=[BatchStatus.in_progress, BatchStatus.cancelling],
            to=final,
            completed_at=utcnow(),
            webhook=self.hooks.delivery_for(batch.webhook_url),
        )

    async def results(self, tenant: str, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        """One line per request, in submission order."""
        async for job in self.jobs(tenant, batch_id):
            yield result_line(job)

    async def jobs(self, tenant: str, batch_id: str) -> AsyncIterator[Job]:
        """The batch's jobs in submission order (NotFound first when it is not the tenant's)."""
        await self.get(tenant, batch_id)
        async for job in self._jobs(tenant, batch_id):
            yield job

    async def _jobs(self, tenant: str, batch_id: str) -> AsyncIterator[Job]:
        """The batch's jobs in submission order, a page at a time."""
        cursor: str | None = None
        while True:
            page, cursor = await self.store.list_jobs(
                tenant, batch_id=batch_id, limit=PAGE, cursor=cursor, oldest_first=True
            )
            for job in page:
                yield job
            if cursor is None:
                return


def result_line(job: Job) -> dict[str, Any]:
    line: dict[str, Any] = {"custom_id": job.custom_id, "job_id": job.id, "status": job.status}
    if job.result is not None:
        line["result"] = job.result.public().model_dump(mode="json")
    if job.error is not None and job.status is not JobStatus.succeeded:
        line["error"] = job.error.model_dump(mode="json")
    return line
