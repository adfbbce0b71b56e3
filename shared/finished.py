"""FinishedJobs: what follows a job's end, whoever ended it (a worker, a cancel, a cache hit)."""

from __future__ import annotations

from shared.batches import BatchService
from shared.coalescing import Coalescing
from shared.models import Job
from shared.ports import JobWakeups


class FinishedJobs:
    """Wake the job's long-polls, close its batch when it was the batch's last job, and settle
    the jobs that joined it (shared/coalescing.py), which are announced the same way."""

    def __init__(
        self,
        wakeups: JobWakeups | None,
        batches: BatchService,
        coalescing: Coalescing | None = None,
    ) -> None:
        self.wakeups, self.batches, self.coalescing = wakeups, batches, coalescing

    async def __call__(self, job: Job) -> None:
        await self._announce(job)
        if self.coalescing is not None:
            for follower in await self.coalescing.leader_ended(job):
                await self._announce(follower)

    async def _announce(self, job: Job) -> None:
        if self.wakeups is not None:
            await self.wakeups.notify([job.id])
        if job.batch_id:
            await self.batches.check_completed(job.batch_id)
