"""JobWrites: a job's status changes, decided by shared.transitions and written by the store.

The use cases (ChatService, BatchService, JobExecutor, Sweeper) change jobs only through here, so
every consumer and every store follows the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Literal

from shared import transitions
from shared.models import Job, JobError, JobStatus, utcnow
from shared.ports import Store
from shared.transitions import AttemptFailure, JobOutcome

PAGE = 500


class JobWrites:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def claim(self, job_id: str, *, lease_until: datetime, now: datetime) -> Job | None:
        """queued (and due) → running, or a lapsed lease taken over; attempts + 1."""
        decide = partial(transitions.claim, lease_until=lease_until, now=now)
        # not worth an fsync: a claim lost with the machine only means the job runs again
        return _after(await self.store.change_job(job_id, decide, durable=False))

    async def requeue(
        self,
        job_id: str,
        *,
        attempt: int,
        note: JobError,
        not_before: datetime | None,
        failure: AttemptFailure | None = None,
    ) -> Job | None:
        """running → queued for a retry, fenced by `attempt`; `failure`: why, for its log."""
        decide = partial(
            transitions.requeue,
            attempt=attempt,
            note=note,
            not_before=not_before,
            now=utcnow(),
            failure=failure,
        )
        return _after(await self.store.change_job(job_id, decide))

    async def defer(
        self, job_id: str, *, attempt: int, note: JobError, not_before: datetime
    ) -> Job | None:
        """Queued again until `not_before`, its claim given back (a wait for a provider quota)."""
        decide = partial(
            transitions.defer, attempt=attempt, note=note, not_before=not_before, now=utcnow()
        )
        return _after(await self.store.change_job(job_id, decide))

    async def finish(self, job_id: str, outcome: JobOutcome) -> Job | None:
        """End the job as `outcome` says; None when its condition did not hold."""
        decide = partial(transitions.finish, outcome=outcome, now=utcnow())
        return _after(await self.store.change_job(job_id, decide))

    async def follow(self, job_id: str, *, attempt: int, leader_id: str) -> Job | None:
        """running → queued, waiting for the identical job `leader_id` (shared/coalescing.py)."""
        decide = partial(transitions.follow, attempt=attempt, leader_id=leader_id, now=utcnow())
        return _after(await self.store.change_job(job_id, decide))

    async def settle(
        self,
        job_ids: Sequence[str],
        leader_id: str,
        leader: Job | None,
        webhook_for: transitions.WebhookFor,
    ) -> list[Job]:
        """Followers of `leader_id` end as it did (`leader`, None when erased), or are released
        to run themselves; returns the jobs changed (the others no longer waited for it, or it
        still runs)."""
        decide = partial(
            transitions.settle,
            leader_id=leader_id,
            leader=leader,
            webhook_for=webhook_for,
            now=utcnow(),
        )
        return [change.after for change in await self.store.change_jobs(job_ids, decide)]

    async def end_queued(
        self,
        batch_id: str,
        to: Literal[JobStatus.failed, JobStatus.cancelled],
        error: JobError | None = None,
    ) -> int:
        """queued → `to` for every job of the batch still queued; returns how many."""
        return len(await self.end_queued_jobs(batch_id, to, error))

    async def end_queued_jobs(
        self,
        batch_id: str,
        to: Literal[JobStatus.failed, JobStatus.cancelled],
        error: JobError | None = None,
    ) -> list[Job]:
        """`end_queued`, returning the jobs it ended."""
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            return []
        decide = partial(transitions.end_queued, to=to, error=error, now=utcnow())
        ended: list[Job] = []
        cursor = None
        while True:
            page, cursor = await self.store.list_jobs(
                batch.tenant, batch_id=batch_id, status=JobStatus.queued, limit=PAGE, cursor=cursor
            )
            changes = await self.store.change_jobs([job.id for job in page], decide)
            ended += [change.after for change in changes]
            if cursor is None:
                return ended

    async def retry_failed(self, batch_id: str) -> list[str]:
        """failed → queued for every failed job of the batch, a page at a time in submission
        order; returns the ids queued again (to enqueue)."""
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            return []
        decide = partial(transitions.retry_failed, now=utcnow())
        retried: list[str] = []
        cursor = None
        while True:
            page, cursor = await self.store.list_jobs(
                batch.tenant,
                batch_id=batch_id,
                status=JobStatus.failed,
                limit=PAGE,
                cursor=cursor,
                oldest_first=True,
            )
            changes = await self.store.change_jobs([job.id for job in page], decide)
            retried += [change.after.id for change in changes]
            if cursor is None:
                return retried

    async def retry_failed_job(self, job_id: str) -> Job | None:
        """failed → queued for one job (an operator's retry); None when it was not failed."""
        decide = partial(transitions.retry_failed, now=utcnow())
        return _after(await self.store.change_job(job_id, decide))

    async def restart_running(self) -> int:
        """running → queued for every job (embedded start-up: the previous process is gone)."""
        running = await self.store.unfinished_jobs(limit=1_000_000, status=JobStatus.running)
        decide = partial(transitions.restart, now=utcnow())
        return len(await self.store.change_jobs([ref.id for ref in running], decide))


def _after(change: transitions.Change | None) -> Job | None:
    return change.after if change is not None else None
