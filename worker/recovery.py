"""Re-enqueue jobs the queue has lost (e.g. Redis restarted without persistence), and close
batches whose completion check was missed.

The store is the source of truth: a job still queued or running long after its last change, and
unknown to arq (no `arq:job:<id>` key), is enqueued again. One worker sweeps at a time (a Redis
lock); duplicates would be harmless anyway, since the executor claims jobs with a compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from shared.factory import Services
from shared.ports import JobRef

log = logging.getLogger(__name__)

LOCK_KEY = "chatjobs:recovery-lock"
SWEEP_INTERVAL_S = 60.0
MIN_AGE_S = 300.0


async def reenqueue_lost_jobs(services: Services, redis: ArqRedis) -> int:
    """One sweep; returns how many jobs were enqueued again."""
    age = max(MIN_AGE_S, 2 * services.settings.job_timeout_s)
    if not await redis.set(LOCK_KEY, "1", nx=True, ex=int(SWEEP_INTERVAL_S)):
        return 0  # another worker swept within the interval

    async def unknown_to_arq(refs: list[JobRef]) -> list[JobRef]:
        async with redis.pipeline(transaction=False) as pipe:
            for ref in refs:
                pipe.exists(job_key_prefix + ref.id)
            held = await pipe.execute()
        return [ref for ref, exists in zip(refs, held, strict=True) if not exists]

    return await services.sweeper.sweep(age, unknown_to_arq)


async def sweep_forever(services: Services, redis: ArqRedis) -> None:
    while True:
        try:
            await reenqueue_lost_jobs(services, redis)
        except Exception:
            log.warning("lost-job sweep failed; trying again later", exc_info=True)
        await asyncio.sleep(SWEEP_INTERVAL_S)
