"""FinishedJobs: what follows a job's end, whoever ended it (a worker, a cancel, a cache hit)."""

from __future__ import annotations

from shared.batches import BatchService
from shared.models import Job
from shared.ports import JobEvents


class FinishedJobs:
    """Wake the job's long-polls, and close its batch when it was the batch's last job."""

    def __init__(self, events: JobEvents | None, batches: BatchService) -> None:
        self.events, self.batches = events, batches

    async def __call__(self, job: Job) -> None:
        if self.events is not None:
            await self.events.notify([job.id])
        if job.batch_id:
            await self.batches.check_completed(job.batch_id)
