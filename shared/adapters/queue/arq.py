"""ArqJobQueue: jobs on Redis through arq's documented API; `python -m worker` consumes them
(worker/supervisor.py).

Single jobs are arq jobs, written by `ArqRedis.enqueue_job`, at a score set by their priority
(`_defer_until` a priority's band in the past: arq starts the lowest scores first). Batch jobs
never enter arq's queue: they wait in lanes of our own (shared/adapters/queue/arq_lanes.py), by
priority, tenant and batch. Workers take them with `take_batch_jobs`, the highest priority first
and tenants, then their batches, in turn, only into the slots their arq jobs leave free
(docs/adr/0009, 0015). So a single job never waits behind a batch job, and a big batch cannot
keep another tenant's batch waiting. Every delay (a retry) waits in `chatjobs:delayed` until due,
then goes back to its lane (`release_due`).

arq job ids: an immediate enqueue uses the job id itself, so enqueueing a job that arq already holds
(waiting or running) is a no-op (arq's job uniqueness). A delayed job, once due, is a request to run
the job again, which must not be swallowed by the arq job that asked for it, so it gets its own arq
id `<job id>@<due ms>`. Duplicates are harmless: the executor claims a job with a compare-and-set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.adapters.queue import arq_lanes as lanes
from shared.adapters.queue.arq_lanes import BatchJob, Delayed
from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.keys import PRIORITIES, Priority
from shared.lanes import RANK, Lane, current_lane
from shared.ports import JobHandler, JobRef

log = logging.getLogger(__name__)

FUNCTION = "run_job"
QUEUE_NAME = "arq:queue"  # arq's default name, kept: jobs queued before an upgrade still run
WAITING_KEY = lanes.WAITING_KEY
DELAYED_KEY = lanes.DELAYED_KEY
JOB_EXPIRES = timedelta(days=7)  # arq drops a job never started within this (its default: 1 day)
# A priority's single jobs are scored this much before the next lower priority's: longer than any
# arq job may wait (JOB_EXPIRES), so an old `normal` job still goes after a new `high` one.
BAND = timedelta(days=10)
RELEASE_CHUNK = 100
STATUS_CHUNK = 100
# connection refused/reset, timeouts, and refusals such as OOM, READONLY or NOAUTH all mean
# "this job was not taken"
UNAVAILABLE = (RedisError, OSError)

T = TypeVar("T")


class ArqJobQueue:
    def __init__(self, redis_url: str, *, timeout_s: float = 5.0) -> None:
        # no connection retries inside a request: an unreachable Redis answers 503 at once
        self._settings = replace(RedisSettings.from_dsn(redis_url), conn_retries=0)
        self._timeout_s = timeout_s
        self._pool: ArqRedis | None = None
        self._connecting = asyncio.Lock()
        self._take: AsyncScript | None = None
        self._due: AsyncScript | None = None

    async def start(self, handler: JobHandler | None = None) -> None:
        if handler is not None:
            log.warning("arq jobs are consumed by `python -m worker`, not by this process")
        try:
            await self.connected()
        except QueueUnavailable as exc:  # keep serving: /readyz reports it, submits answer 503
            log.warning("Redis is not reachable yet: %s", exc)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        self._pool, self._take, self._due = None, None, None

    async def connected(self) -> ArqRedis:
        """The connection pool (arq's `create_pool`), made on first use; QueueUnavailable when
        Redis cannot be reached. arq workers share it (`Worker(redis_pool=…)`)."""
        async with self._connecting:
            if self._pool is None:
                try:
                    self._pool = await create_pool(self._settings, default_queue_name=QUEUE_NAME)
                except UNAVAILABLE as exc:
                    raise QueueUnavailable(f"cannot connect to Redis: {exc!r}") from exc
        return self._pool

    async def enqueue(self, job_id: str, delay_s: float = 0, lane: Lane | None = None) -> None:
        lane = current_lane(lane)
        if delay_s > 0:
            await self._delay(Delayed(job_id, lane), delay_s)
        else:
            await self._call(lambda pool: self._enqueue_single(pool, job_id, job_id, lane))

    async def enqueue_many(
        self, job_ids: Sequence[str], group: str | None = None, lane: Lane | None = None
    ) -> None:
        if not job_ids:
            return
        lane, name = current_lane(lane), group or lanes.DEFAULT_GROUP

        async def write(pool: ArqRedis) -> object:
            async with pool.pipeline(transaction=True) as pipe:
                pipe.rpush(lanes.jobs_key(lane, name), *job_ids)
                pipe.sadd(WAITING_KEY, *job_ids)
                pipe.zadd(lanes.groups_key(lane), {name: 0}, nx=True)  # a new group goes next
                pipe.zadd(lanes.tenants_key(lane.priority), {lane.tenant: 0}, nx=True)
                return await pipe.execute()

        await self._call(write, extra_s=len(job_ids) / 10_000)  # 50k jobs: ~0.6 s

    async def take_batch_jobs(self, count: int) -> list[BatchJob]:
        """Up to `count` batch jobs: the highest priority first, tenants then their groups in
        turn; taken jobs are no longer held here (a worker that dies running one leaves it to the
        lost-job sweep)."""
        if count < 1:
            return []

        async def take(pool: ArqRedis) -> list[bytes]:
            if self._take is None:
                self._take = pool.register_script(lanes.TAKE)
            keys = [WAITING_KEY, lanes.LEGACY_GROUPS_KEY]
            flat: list[bytes] = await self._take(keys=keys, args=[count, lanes.PREFIX, *PRIORITIES])
            return flat

        flat = [part.decode() for part in await self._call(take)]
        return [
            BatchJob(flat[i], flat[i + 1], Lane(flat[i + 2], flat[i + 3]))  # type: ignore[arg-type]
            for i in range(0, len(flat), 4)
        ]

    async def release_due(self) -> int:
        """Make the delayed jobs that are due arq jobs at their priority; returns how many."""

        async def due(pool: ArqRedis) -> list[bytes]:
            if self._due is None:
                self._due = pool.register_script(lanes.DUE)
            now = round(time.time() * 1000)
            args: list[str | int] = [now, RELEASE_CHUNK, lanes.SEP]
            singles: list[bytes] = await self._due(keys=[DELAYED_KEY, WAITING_KEY], args=args)
            return singles

        singles = [Delayed.parse(raw) for raw in await self._call(due)]
        for n, job in enumerate(singles):
            try:
                await self._release(job)
            except QueueUnavailable:  # back where it was, for the next look
                await self._delay_all(singles[n:], 0)
                raise
        return len(singles)

    async def lost(self, refs: list[JobRef]) -> list[JobRef]:
        """The jobs among `refs` this queue holds nowhere: waiting in no lane nor delayed, and
        unknown to arq (`Job.status()` is `not_found`)."""
        if not refs:
            return []
        pool = await self.connected()
        waiting = await pool.smismember(WAITING_KEY, [ref.id for ref in refs])  # type: ignore[misc]
        candidates = [ref for ref, held in zip(refs, waiting, strict=True) if not held]
        lost: list[JobRef] = []
        for start in range(0, len(candidates), STATUS_CHUNK):
            chunk = candidates[start : start + STATUS_CHUNK]
            jobs = [Job(ref.id, pool, _queue_name=QUEUE_NAME) for ref in chunk]
            statuses = await asyncio.gather(*(job.status() for job in jobs))
            lost += [r for r, s in zip(chunk, statuses, strict=True) if s is JobStatus.not_found]
        return lost

    async def pending(self) -> bool:
        """Whether any job waits: in a lane, delayed, or in arq's queue (arq's `queued_jobs`)."""
        pool = await self.connected()
        keys = [lanes.tenants_key(p) for p in PRIORITIES]
        keys += [lanes.LEGACY_GROUPS_KEY, DELAYED_KEY]
        if await pool.exists(*keys):
            return True
        return bool(await pool.queued_jobs(queue_name=QUEUE_NAME))

    async def lock(self, name: str, ttl_s: float) -> bool:
        """Hold the lock `name` for `ttl_s` unless someone else does; True when taken."""
        pool = await self.connected()
        return bool(await pool.set(name, "1", nx=True, px=max(round(ttl_s * 1000), 1)))

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await (await self.connected()).ping())
        except (QueueUnavailable, *UNAVAILABLE):
            return False

    async def _enqueue_single(self, pool: ArqRedis, job_id: str, arq_id: str, lane: Lane) -> object:
        return await pool.enqueue_job(
            FUNCTION,
            job_id,
            lane.priority,
            lane.tenant,
            _job_id=arq_id,
            _queue_name=QUEUE_NAME,
            _defer_until=band_start(lane.priority),
            _expires=JOB_EXPIRES,
        )

    async def _release(self, job: Delayed) -> None:
        arq_id = f"{job.id}@{round(time.time() * 1000)}"
        await self._call(lambda pool: self._enqueue_single(pool, job.id, arq_id, job.lane))

    async def _delay(self, job: Delayed, delay_s: float) -> None:
        await self._call(lambda pool: self._write_delayed(pool, [job], delay_s))

    async def _delay_all(self, jobs: Sequence[Delayed], delay_s: float) -> None:
        with contextlib.suppress(QueueUnavailable):
            await self._call(lambda pool: self._write_delayed(pool, jobs, delay_s))

    @staticmethod
    async def _write_delayed(pool: ArqRedis, jobs: Sequence[Delayed], delay_s: float) -> object:
        due = round((time.time() + max(delay_s, 0)) * 1000)
        async with pool.pipeline(transaction=True) as pipe:
            pipe.sadd(WAITING_KEY, *(job.id for job in jobs))
            pipe.zadd(DELAYED_KEY, {job.entry(): due for job in jobs})
            return await pipe.execute()

    async def _call(self, step: Callable[[ArqRedis], Awaitable[T]], extra_s: float = 0) -> T:
        """One bounded call on the pool; an unreachable Redis becomes QueueUnavailable."""
        try:
            async with asyncio.timeout(self._timeout_s + extra_s):
                return await step(await self.connected())
        except (TimeoutError, *UNAVAILABLE) as exc:
            raise QueueUnavailable(f"Redis queue unavailable: {exc!r}") from exc


def band_start(priority: Priority) -> datetime | None:
    """The score arq gives a single job of `priority` enqueued now: now for `low`, a BAND
    earlier for each priority above it (None: arq's own, now)."""
    steps = len(PRIORITIES) - 1 - RANK[priority]
    return datetime.now(UTC) - steps * BAND if steps else None


HARD_MARGIN_S = 5.0  # arq's job_timeout over the executor's own bound (worker/arq_options.py)


def arq_job_timeout_s(settings: Settings) -> float:
    return settings.job_timeout_s + HARD_MARGIN_S


def redelivery_horizon_s(settings: Settings) -> float:
    """No delivery of a job lasts longer: arq cancels its jobs at `job_timeout`, and the executor
    bounds every delivery (a batch runner's too) more tightly still."""
    return arq_job_timeout_s(settings)
