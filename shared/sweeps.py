"""Sweeper: puts back on the queue what the queue has lost, closes batches whose completion
check was missed, and deletes what JOB_RETENTION_DAYS no longer keeps. The store is the source of
truth. Every process runs one sweep loop (`sweep_forever`), the scheduled Lambda one sweep
(`sweep_due`), with the SweepPolicy the composition root derives from the queue."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from shared.batches import BatchService
from shared.job_writes import JobWrites
from shared.lanes import Lane
from shared.models import utcnow
from shared.ports import JobQueue, JobRef, Store

log = logging.getLogger(__name__)

RECOVERY_LIMIT = 10_000_000
SWEEP_LIMIT = 50_000
PURGE_CHUNK = 500  # rows one purge write deletes at most: other writes never wait long behind it
PURGE_CHUNKS = 20  # per sweep: a backlog (the first purge of an old database) clears over sweeps

LOCK_NAME = "chatjobs:sweep-lock"
MAX_SWEEP_INTERVAL_S = 15.0
LostFilter = Callable[[list[JobRef]], Awaitable[list[JobRef]]]
Lock = Callable[[str, float], Awaitable[bool]]


async def all_lost(refs: list[JobRef]) -> list[JobRef]:
    """A queue that cannot tell which jobs it holds (SQS): the age alone decides."""
    return refs


async def none_lost(refs: list[JobRef]) -> list[JobRef]:
    """A queue that holds every job it was given while its process lives (in-process)."""
    return []


@dataclass(frozen=True)
class SweepPolicy:
    """How the process's queue is swept, from the queue's own redelivery horizon: a job unchanged
    for `lost_after_s` is not being run, `lost` says which of those the queue no longer holds,
    and `lock` (when many processes sweep one queue) lets one sweep at a time."""

    lost_after_s: float
    lost: LostFilter = all_lost
    lock: Lock | None = None

    @property
    def interval_s(self) -> float:
        return min(self.lost_after_s / 4, MAX_SWEEP_INTERVAL_S)


class Sweeper:
    def __init__(
        self,
        store: Store,
        batches: BatchService,
        queue: JobQueue,
        policy: SweepPolicy | None = None,
    ) -> None:
        self.store, self.batches, self.queue = store, batches, queue
        self.policy = policy or SweepPolicy(lost_after_s=60.0, lost=none_lost)

    async def sweep_due(self) -> int:
        """One sweep under the policy (unless another process holds the sweep lock)."""
        policy = self.policy
        if policy.lock is not None and not await policy.lock(LOCK_NAME, policy.interval_s):
            return 0
        return await self.sweep(policy.lost_after_s, policy.lost)

    async def sweep_forever(self, stop: asyncio.Event) -> None:
        """The process's one sweep loop: sweep every `policy.interval_s` until `stop`; an error
        is logged (once per outage) and never ends the loop."""
        failing = False
        while not stop.is_set():
            try:
                await self.sweep_due()
            except Exception as exc:
                if not failing:
                    log.warning("sweep failed (%r); trying again every %.0f s", exc,
                                self.policy.interval_s)  # fmt: skip
                failing = True
            else:
                if failing:
                    log.warning("sweep works again")
                failing = False
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.policy.interval_s)

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

    async def sweep(self, min_age_s: float, lost: LostFilter = all_lost) -> int:
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

    async def reenqueue(self, refs: Sequence[JobRef]) -> None:
        """Single jobs one by one; a batch's jobs together in its group, so they keep their
        batch's place in the fair interleave instead of jumping ahead as single jobs."""
        groups: dict[tuple[str, Lane], list[str]] = defaultdict(list)
        for ref in refs:
            if ref.batch_id is None:
                await self.queue.enqueue(ref.id, lane=ref.lane)
            else:
                groups[(ref.batch_id, ref.lane)].append(ref.id)
        for (batch_id, lane), job_ids in groups.items():
            await self.queue.enqueue_many(job_ids, group=batch_id, lane=lane)
