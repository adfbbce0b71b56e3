"""Sweeper: puts back on the queue what the queue has lost, and closes batches whose completion
check was missed. The store is the source of truth; every consumer's sweep calls this."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from shared.batches import BatchService
from shared.job_writes import JobWrites
from shared.models import utcnow
from shared.ports import JobQueue, JobRef, Store

log = logging.getLogger(__name__)

RECOVERY_LIMIT = 10_000_000
SWEEP_LIMIT = 50_000

LostFilter = Callable[[list[JobRef]], Awaitable[list[JobRef]]]


async def _all_lost(refs: list[JobRef]) -> list[JobRef]:
    return refs


class Sweeper:
    def __init__(self, store: Store, batches: BatchService, queue: JobQueue) -> None:
        self.store, self.batches, self.queue = store, batches, queue

    async def recover_after_restart(self) -> int:
        """Embedded mode after a restart: this process is the only worker, so jobs left running
        died with the previous process: put them back to queued and enqueue all unfinished."""
        await JobWrites(self.store).restart_running()
        await self.batches.close_finished()
        refs = await self.store.unfinished_jobs(limit=RECOVERY_LIMIT)
        if refs:
            log.info("re-enqueueing %d unfinished jobs", len(refs))
        await self.reenqueue(refs)
        return len(refs)

    async def sweep(self, min_age_s: float, lost: LostFilter = _all_lost) -> int:
        """Re-enqueue jobs unchanged for `min_age_s` that `lost` says the queue no longer holds,
        and close missed batches; returns how many jobs went back on the queue."""
        cutoff = utcnow() - timedelta(seconds=min_age_s)
        stale = await self.store.unfinished_jobs(limit=SWEEP_LIMIT, updated_before=cutoff)
        await self.batches.close_finished()
        missing = await lost(stale) if stale else []
        await self.reenqueue(missing)
        if missing:
            log.warning("re-enqueued %d jobs that the queue no longer held", len(missing))
        return len(missing)

    async def reenqueue(self, refs: Sequence[JobRef]) -> None:
        """Single jobs one by one; a batch's jobs together in its group, so they keep their
        batch's place in the fair interleave instead of jumping ahead as single jobs."""
        groups: dict[str, list[str]] = defaultdict(list)
        for ref in refs:
            if ref.batch_id is None:
                await self.queue.enqueue(ref.id)
            else:
                groups[ref.batch_id].append(ref.id)
        for batch_id, job_ids in groups.items():
            await self.queue.enqueue_many(job_ids, group=batch_id)
