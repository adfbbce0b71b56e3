"""BatchRunner: a worker's batch jobs, taken from their groups into the slots arq's jobs leave free.

Batch jobs do not pass through arq's queue (docs/adr/0009): as soon as this process has a free
slot, the runner takes that many batch jobs (`ArqJobQueue.take_batch_jobs`, one round trip, the
highest priority first, tenants and their batches in turn, docs/adr/0015) and runs each through
the same handler as everything else, in its lane. A delay the executor asks for waits in the
queue's delayed set; every IDLE_POLL_S the runner makes the delayed jobs that are due arq jobs at
their priority (`ArqJobQueue.release_due`). A job cancelled on the way out goes back to its
group at once; a job whose worker died is found by the lost-job sweep
(`Sweeper.sweep_forever`, shared/sweeps.py).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from shared.adapters.queue.arq import ArqJobQueue
from shared.adapters.queue.arq_lanes import BatchJob
from shared.lanes import delivering
from shared.logs import bound
from shared.ports import JobHandler
from worker.outage import UNREACHABLE, Outage
from worker.slots import Slots

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.05  # no batch job waiting: look again this often
PUT_BACK_S = 2.0


class BatchRunner:
    def __init__(
        self, queue: ArqJobQueue, handler: JobHandler, slots: Slots, idle_s: float = IDLE_POLL_S
    ) -> None:
        self.queue, self.handler, self.slots, self.idle_s = queue, handler, slots, idle_s

    async def run(self, stop: asyncio.Event) -> None:
        """Take batch jobs into free slots, and release delayed jobs as they come due, until
        `stop` is set; Redis outages are waited out."""
        await asyncio.gather(self._take_jobs(stop), self._release_due(stop))

    async def _take_jobs(self, stop: asyncio.Event) -> None:
        outage = Outage("batch jobs")
        while await self.slots.until(lambda: self.slots.free > 0 or stop.is_set()):
            if stop.is_set():
                return
            try:
                taken = await self.take()
            except UNREACHABLE as exc:
                await _sleep_unless(stop, outage.failed(exc))
                continue
            outage.recovered()
            if not taken:
                await _sleep_unless(stop, self.idle_s)

    async def _release_due(self, stop: asyncio.Event) -> None:
        """Due delayed jobs back at their priority, whether or not a slot is free: a single job
        starts on arq's next poll regardless."""
        outage = Outage("delayed jobs")
        while not stop.is_set():
            try:
                await self.queue.release_due()
            except UNREACHABLE as exc:
                await _sleep_unless(stop, outage.failed(exc))
                continue
            outage.recovered()
            await _sleep_unless(stop, self.idle_s)

    async def drain(self) -> None:
        """Run batch jobs until none is waiting or running (burst mode)."""
        while True:
            await self.slots.until(lambda: self.slots.free > 0)
            await self.queue.release_due()
            if not await self.take():
                if not self.slots.batch_jobs:
                    return
                await self.slots.until(lambda: not self.slots.batch_jobs)

    async def take(self) -> list[BatchJob]:
        taken = await self.queue.take_batch_jobs(self.slots.free)
        for job in taken:
            self.slots.start_batch_job(self._run(job), name=f"batch job {job.id}")
        return taken

    async def _run(self, job: BatchJob) -> None:
        try:
            with bound(job_id=job.id), delivering(job.lane):
                await self.handler(job.id)
        except asyncio.CancelledError:
            await self._put_back(job)
            raise
        except Exception:  # e.g. a retry that could not be enqueued: the sweep finds the job
            log.exception("batch job %s: its delivery failed", job.id)

    async def _put_back(self, job: BatchJob) -> None:
        try:
            async with asyncio.timeout(PUT_BACK_S):
                await self.queue.enqueue_many([job.id], group=job.group, lane=job.lane)
        except UNREACHABLE as exc:  # TimeoutError is an OSError
            log.warning("batch job %s: not put back (%r); the sweep will find it", job.id, exc)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
