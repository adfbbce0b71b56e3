"""Sweeper: puts back on the queue what the queue has lost, closes batches whose completion
check was missed, and deletes what JOB_RETENTION_DAYS no longer keeps. The store is the source of
truth; every consumer's sweep calls this (embedded mode, which has none, runs `purge_forever`)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from datetime import timedelta

from shared.batches import BatchService
from shared.job_writes import JobWrites
from shared.models import utcnow
from shared.ports import JobQueue, JobRef, Store

log = logging.getLogger(__name__)

RECOVERY_LIMIT = 10_000_000
SWEEP_LIMIT = 50_000
PURGE_CHUNK = 500  # rows one purge write deletes at most: other writes never wait long behind it
PURGE_CHUNKS = 20  # per sweep: a backlog (the first purge of an old database) clears over sweeps
PURGE_INTERVAL_S = 600.0  # embedded mode's purge_forever

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
        await self.purge_expired()
        return len(missing)

    async def purge_expired(self) -> int:
        """Delete expired jobs and batches (shared/retention.py), a chunk a write, up to
        PURGE_CHUNKS chunks; returns how many were deleted."""
        total = 0
        for _ in range(PURGE_CHUNKS):
            deleted = await self.store.purge_expired(PURGE_CHUNK)
            total += deleted
            if deleted < PURGE_CHUNK:
                break
        if total:
            log.info("retention: deleted %d expired jobs, batches and keys", total)
        return total

    async def purge_forever(
        self, stop: asyncio.Event, interval_s: float = PURGE_INTERVAL_S
    ) -> None:
        """Purge now and every `interval_s` (at once again while a backlog remains) until `stop`
        is set; errors are logged and never end the loop."""
        while not stop.is_set():
            deleted = 0
            try:
                deleted = await self.purge_expired()
            except Exception:
                log.warning("retention purge failed; trying again later", exc_info=True)
            if deleted < PURGE_CHUNK * PURGE_CHUNKS:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_s)

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
