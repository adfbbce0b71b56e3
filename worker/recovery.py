"""Re-enqueue jobs the queue has lost (e.g. Redis restarted without persistence), and close
batches whose completion check was missed.

The store is the source of truth: a job still queued or running `lost_after_s` after its last
change (LOST_JOB_AFTER_S, about a minute, and always longer than a job's lease, so a job running
under its lease is never taken for lost), and unknown to arq (no `arq:job:<id>` key), is enqueued
again. A sweep runs every quarter of that age, so a lost job runs again at most about 1.25 x that
age after its last change. One worker sweeps at a time (a Redis lock); duplicates would be harmless
anyway, since the executor claims jobs with a compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.factory import Services
from shared.ports import JobRef
from worker.outage import UNREACHABLE, Outage

log = logging.getLogger(__name__)

LOCK_KEY = "chatjobs:recovery-lock"
LEASE_EXTRA_S = 5.0  # JobExecutor leases a job for job_timeout_s + 5 s
LEASE_SLACK_S = 2.0
MAX_SWEEP_INTERVAL_S = 15.0
REDIS_DOWN: tuple[type[Exception], ...] = (*UNREACHABLE, QueueUnavailable)


def lost_after_s(settings: Settings) -> float:
    """How long a job must have been unchanged before a sweep may take it for lost."""
    lease_s = settings.job_timeout_s + LEASE_EXTRA_S
    return max(settings.lost_job_after_s, lease_s + LEASE_SLACK_S)


def sweep_interval_s(settings: Settings) -> float:
    return min(lost_after_s(settings) / 4, MAX_SWEEP_INTERVAL_S)


async def reenqueue_lost_jobs(services: Services, redis: ArqRedis) -> int:
    """One sweep; returns how many jobs were enqueued again."""
    settings = services.settings
    lock_ms = max(round(sweep_interval_s(settings) * 1000), 1)
    if not await redis.set(LOCK_KEY, "1", nx=True, px=lock_ms):
        return 0  # another worker swept within the interval

    async def unknown_to_arq(refs: list[JobRef]) -> list[JobRef]:
        async with redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.exists(job_key_prefix + ref.id)
            held = await pipe.execute()
        return [ref for ref, exists in zip(refs, held, strict=True) if not exists]

    return await services.sweeper.sweep(lost_after_s(settings), unknown_to_arq)


async def sweep_forever(services: Services, redis: ArqRedis) -> None:
    """Sweep every `sweep_interval_s` until cancelled; no error ends it."""
    outage = Outage("lost-job sweep")  # logs when Redis goes and comes back, not every sweep
    while True:
        try:
            await reenqueue_lost_jobs(services, redis)
        except REDIS_DOWN as exc:
            outage.failed(exc)
        except Exception:
            log.warning("lost-job sweep failed; trying again later", exc_info=True)
        else:
            outage.recovered()
        await asyncio.sleep(sweep_interval_s(services.settings))
