"""ArqJobQueue: jobs on Redis through arq's documented API; `python -m worker` consumes them
(worker/supervisor.py).

Single jobs, and every delayed enqueue (a retry), are arq jobs, written by
`ArqRedis.enqueue_job`. Batch jobs never enter arq's queue: they wait in one Redis list per group
(`chatjobs:group:<batch id>`), a sorted set holds the groups' turns and a set every waiting id.
Workers take them from there with `take_batch_jobs`, one job of each group in turn, only into
the slots their arq jobs leave free (docs/adr/0009). So a single job never waits behind a batch
job, and a big batch cannot keep a smaller one waiting.

arq job ids: an immediate enqueue uses the job id itself, so enqueueing a job that arq already holds
(waiting or running) is a no-op (arq's job uniqueness). A delayed enqueue is a request to run the
job again later, which must not be swallowed by the arq job asking for it, so it gets its own arq id
`<job id>@<due ms>`. Duplicates are harmless: the executor claims a job with a compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.ports import JobHandler, JobRef

log = logging.getLogger(__name__)

FUNCTION = "run_job"
QUEUE_NAME = "arq:queue"  # arq's default name, kept: jobs queued before an upgrade still run
GROUPS_KEY = "chatjobs:groups"  # sorted set: group -> turn; the lowest turn goes next
GROUP_PREFIX = "chatjobs:group:"  # list of the group's waiting job ids
WAITING_KEY = "chatjobs:batch-waiting"  # set of every job id waiting in a group
DEFAULT_GROUP = "_"
JOB_EXPIRES = timedelta(days=7)  # arq drops a job never started within this (its default: 1 day)
STATUS_CHUNK = 100
# connection refused/reset, timeouts, and refusals such as OOM, READONLY or NOAUTH all mean
# "this job was not taken"
UNAVAILABLE = (RedisError, OSError)

# Up to ARGV[1] batch jobs, one from each group in turn: the head group gives its first job, then
# goes to the back of the turns (or away, once empty). KEYS: groups, waiting set. ARGV: count,
# group prefix. Returns {id, group, id, group, ...}.
TAKE = """
local taken = {}
while #taken < 2 * tonumber(ARGV[1]) do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #head == 0 then break end
  local group = ARGV[2] .. head[1]
  local job_id = redis.call('LPOP', group)
  if redis.call('LLEN', group) == 0 then
    redis.call('ZREM', KEYS[1], head[1])
  else
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    redis.call('ZADD', KEYS[1], tonumber(last[2]) + 1, head[1])
  end
  if job_id then
    redis.call('SREM', KEYS[2], job_id)
    taken[#taken + 1] = job_id
    taken[#taken + 1] = head[1]
  end
end
return taken
"""

T = TypeVar("T")


@dataclass(frozen=True)
class BatchJob:
    id: str
    group: str


class ArqJobQueue:
    def __init__(self, redis_url: str, *, timeout_s: float = 5.0) -> None:
        # no connection retries inside a request: an unreachable Redis answers 503 at once
        self._settings = replace(RedisSettings.from_dsn(redis_url), conn_retries=0)
        self._timeout_s = timeout_s
        self._pool: ArqRedis | None = None
        self._connecting = asyncio.Lock()
        self._take: AsyncScript | None = None

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
        self._pool, self._take = None, None

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

    async def enqueue(self, job_id: str, delay_s: float = 0) -> None:
        delay_ms = max(round(delay_s * 1000), 0)
        arq_id = f"{job_id}@{round(time.time() * 1000) + delay_ms}" if delay_ms else job_id
        delay = timedelta(milliseconds=delay_ms)

        async def write(pool: ArqRedis) -> object:
            return await pool.enqueue_job(
                FUNCTION,
                job_id,
                _job_id=arq_id,
                _queue_name=QUEUE_NAME,
                _defer_by=delay if delay_ms else None,
                _expires=JOB_EXPIRES + delay,
            )

        await self._call(write)

    async def enqueue_many(self, job_ids: Sequence[str], group: str | None = None) -> None:
        if not job_ids:
            return
        name = group or DEFAULT_GROUP

        async def write(pool: ArqRedis) -> object:
            async with pool.pipeline(transaction=True) as pipe:
                pipe.rpush(GROUP_PREFIX + name, *job_ids)
                pipe.sadd(WAITING_KEY, *job_ids)
                pipe.zadd(GROUPS_KEY, {name: 0}, nx=True)  # a new group's first job goes next
                return await pipe.execute()

        await self._call(write, extra_s=len(job_ids) / 10_000)  # 50k jobs: ~0.6 s

    async def take_batch_jobs(self, count: int) -> list[BatchJob]:
        """Up to `count` batch jobs, one from each group in turn; taken jobs are no longer held
        here (a worker that dies running one leaves it to the lost-job sweep)."""
        if count < 1:
            return []

        async def take(pool: ArqRedis) -> list[bytes]:
            if self._take is None:
                self._take = pool.register_script(TAKE)
            flat: list[bytes] = await self._take(
                keys=[GROUPS_KEY, WAITING_KEY], args=[count, GROUP_PREFIX]
            )
            return flat

        flat = await self._call(take)
        return [BatchJob(flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2)]

    async def lost(self, refs: list[JobRef]) -> list[JobRef]:
        """The jobs among `refs` this queue holds nowhere: waiting in no group, and unknown to
        arq (`Job.status()` is `not_found`)."""
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
        """Whether any job waits: in a batch group or in arq's queue (arq's `queued_jobs`)."""
        pool = await self.connected()
        if await pool.zcard(GROUPS_KEY):
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

    async def _call(self, step: Callable[[ArqRedis], Awaitable[T]], extra_s: float = 0) -> T:
        """One bounded call on the pool; an unreachable Redis becomes QueueUnavailable."""
        try:
            async with asyncio.timeout(self._timeout_s + extra_s):
                return await step(await self.connected())
        except (TimeoutError, *UNAVAILABLE) as exc:
            raise QueueUnavailable(f"Redis queue unavailable: {exc!r}") from exc


HARD_MARGIN_S = 5.0  # arq's job_timeout over the executor's own bound (worker/arq_options.py)


def arq_job_timeout_s(settings: Settings) -> float:
    return settings.job_timeout_s + HARD_MARGIN_S


def redelivery_horizon_s(settings: Settings) -> float:
    """No delivery of a job lasts longer: arq cancels its jobs at `job_timeout`, and the executor
    bounds every delivery (a batch runner's too) more tightly still."""
    return arq_job_timeout_s(settings)
