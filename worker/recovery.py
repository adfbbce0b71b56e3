"""Re-enqueue jobs the queue has lost (e.g. Redis restarted without persistence), and close
batches whose completion check was missed.

The store is the source of truth: a job still queued or running `lost_after_s` after its last
change (LOST_JOB_AFTER_S, about a minute, and never less than the queue's redelivery horizon, so a
job being run is never taken for lost), and held nowhere by the queue (`ArqJobQueue.lost`: in no
batch group, unknown to arq), is enqueued again. A sweep runs every quarter of that age, so a lost
job runs again at most about 1.25 x that age after its last change. One worker sweeps at a time
(a Redis lock); duplicates would be harmless anyway, since the executor claims jobs with a
compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging

from shared.adapters.queue.arq import ArqJobQueue
from shared.config import Settings
from shared.factory import Services
from worker.outage import UNREACHABLE, Outage
from worker.settings import redelivery_horizon_s

log = logging.getLogger(__name__)

LOCK_KEY = "chatjobs:recovery-lock"
SLACK_S = 2.0
MAX_SWEEP_INTERVAL_S = 15.0


def lost_after_s(settings: Settings) -> float:
    """How long a job must have been unchanged before a sweep may take it for lost: beyond the
    queue's redelivery horizon (worker/settings.py), which also covers a job's store lease."""
    return max(settings.lost_job_after_s, redelivery_horizon_s(settings) + SLACK_S)


def sweep_interval_s(settings: Settings) -> float:
    return min(lost_after_s(settings) / 4, MAX_SWEEP_INTERVAL_S)


async def reenqueue_lost_jobs(services: Services, queue: ArqJobQueue) -> int:
    """One sweep; returns how many jobs were enqueued again."""
    settings = services.settings
    if not await queue.lock(LOCK_KEY, sweep_interval_s(settings)):
        return 0  # another worker swept within the interval
    return await services.sweeper.sweep(lost_after_s(settings), queue.lost)


async def sweep_forever(services: Services, queue: ArqJobQueue) -> None:
    """Sweep every `sweep_interval_s` until cancelled; no error ends it."""
    outage = Outage("lost-job sweep")  # logs when Redis goes and comes back, not every sweep
    while True:
        try:
            await reenqueue_lost_jobs(services, queue)
        except UNREACHABLE as exc:
            outage.failed(exc)
        except Exception:
            log.warning("lost-job sweep failed; trying again later", exc_info=True)
        else:
            outage.recovered()
        await asyncio.sleep(sweep_interval_s(services.settings))
