"""ArqJobQueue: the producer side of arq on Redis. `python -m worker` consumes.

Jobs are written with arq's own key layout and serializer (`arq:job:<id>` + the `arq:queue` sorted
set), atomically: one Lua script for one job, one pipelined MULTI/EXEC for a batch.

Single jobs go straight into arq's queue. Batch jobs wait in one Redis list per group; workers
`promote()` them into arq's queue only as they have free slots, taking one job from each group in
turn. arq's queue so stays short: a single job waits behind a few batch jobs at most, and a big
batch cannot keep a smaller one waiting.

Every enqueue of work that is due now also publishes on WAKE_CHANNEL, in the same transaction, so
that idle workers poll at once instead of on their next tick (worker/polling.py).

arq job ids: an immediate enqueue uses the job id itself, so enqueueing a job that arq already holds
(waiting or running) is a no-op. A delayed enqueue is a request to run the job again later, which
must not be swallowed by the arq job asking for it, so it gets its own arq id `<job id>@<due ms>`.
Duplicates are harmless: the executor claims a job with a compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.errors import QueueUnavailable
from shared.ports import JobHandler

log = logging.getLogger(__name__)

FUNCTION = "run_job"
QUEUE_NAME = default_queue_name
GROUPS_KEY = "chatjobs:groups"  # sorted set: group -> turn; the lowest turn goes next
GROUP_PREFIX = "chatjobs:group:"  # list of the group's waiting job ids
DEFAULT_GROUP = "_"
WAKE_CHANNEL = "chatjobs:work"  # "there is work due now": wakes idle workers
JOB_EXPIRES_MS = 7 * 86_400_000  # arq drops a job never started within this (its default: 1 day)
# connection refused/reset, timeouts, and refusals such as OOM, READONLY or NOAUTH all mean
# "this job was not taken"
UNAVAILABLE = (RedisError, OSError)

# One batch job onto arq's queue: the head group's first job, then that group goes to the back of
# the turn (or away, once empty). Both scripts below include it. Returns 1 if a job moved.
PROMOTE_ONE = """
local function promote_one(groups, queue, now, prefix)
  local head = redis.call('ZRANGE', groups, 0, 0)
  if #head == 0 then return nil end
  local group = prefix .. head[1]
  local job_id = redis.call('LPOP', group)
  if job_id then redis.call('ZADD', queue, 'NX', now, job_id) end
  if redis.call('LLEN', group) == 0 then
    redis.call('ZREM', groups, head[1])
  else
    local last = redis.call('ZRANGE', groups, -1, -1, 'WITHSCORES')
    redis.call('ZADD', groups, tonumber(last[2]) + 1, head[1])
  end
  if job_id then return 1 end
  return 0
end
"""

PROMOTE = (
    PROMOTE_ONE
    + """
local moved = 0
while moved < tonumber(ARGV[2]) do
  local step = promote_one(KEYS[1], KEYS[2], ARGV[1], ARGV[3])
  if step == nil then break end
  moved = moved + step
end
return moved
"""
)

# One job into arq's layout, as one atomic command (a MULTI pipeline costs the API several times
# the CPU to build and read): the job key (NX), its queue entry (NX), and, when it is due now,
# the announcement that wakes idle workers. KEYS: job key, queue, wake channel. ARGV: payload,
# expiry ms, arq id, due ms, announce (0/1).
ENQUEUE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[3])
if ARGV[5] == '1' then redis.call('PUBLISH', KEYS[3], '') end
"""

# One worker's poll in one round trip: count the due jobs nobody runs yet, promote batch jobs only
# for the free slots they leave (promote_one), then claim up to `slots` due jobs the way arq's
# Worker.start_jobs does: skip a job whose in-progress key exists (another worker runs it), set
# that key for the others. KEYS: groups, queue. ARGV: now, slots, group prefix, scan, in-progress
# prefix, lease ms. Returns {id, score, id, score, ...}.
TAKE = (
    PROMOTE_ONE
    + """
local function waiting()
  local due = redis.call(
    'ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[4])
  local free = {}
  for i = 1, #due, 2 do
    if redis.call('EXISTS', ARGV[5] .. due[i]) == 0 then
      free[#free + 1] = due[i]
      free[#free + 1] = due[i + 1]
    end
  end
  return free
end
local slots = tonumber(ARGV[2])
local free = waiting()
local moved = 0
while #free / 2 + moved < slots do
  local step = promote_one(KEYS[1], KEYS[2], ARGV[1], ARGV[3])
  if step == nil then break end
  moved = moved + step
end
if moved > 0 then free = waiting() end
local taken = {}
for i = 1, math.min(#free, 2 * slots), 2 do
  redis.call('SET', ARGV[5] .. free[i], '1', 'PX', ARGV[6])
  taken[#taken + 1] = free[i]
  taken[#taken + 1] = free[i + 1]
end
return taken
"""
)

Pipe = Any  # redis.asyncio.client.Pipeline, untyped enough that Any reads better


class ArqJobQueue:
    def __init__(self, redis_url: str, *, timeout_s: float = 5.0) -> None:
        # no connection retries inside a request: an unreachable Redis answers 503 at once
        self._settings = replace(RedisSettings.from_dsn(redis_url), conn_retries=0)
        self._timeout_s = timeout_s
        self._pool: ArqRedis | None = None
        self._owns_pool = True
        self._connecting = asyncio.Lock()
        self._promote: AsyncScript | None = None
        self._take: AsyncScript | None = None
        self._enqueue: AsyncScript | None = None

    @classmethod
    def from_pool(cls, pool: ArqRedis, *, timeout_s: float = 5.0) -> ArqJobQueue:
        """Share a pool someone else owns (the arq worker's); `close()` leaves it open."""
        queue = cls("redis://unused", timeout_s=timeout_s)
        queue._pool, queue._owns_pool = pool, False
        return queue

    async def start(self, handler: JobHandler | None = None) -> None:
        if handler is not None:
            log.warning("arq jobs are consumed by `python -m worker`, not by this process")
        try:
            await self._connected()
        except QueueUnavailable as exc:  # keep serving: /readyz reports it, submits answer 503
            log.warning("Redis is not reachable yet: %s", exc)

    async def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            await self._pool.aclose()
        self._pool, self._promote, self._take, self._enqueue = None, None, None, None

    async def enqueue(self, job_id: str, delay_s: float = 0) -> None:
        now = timestamp_ms()
        due = now + max(round(delay_s * 1000), 0)
        arq_id = job_id if due == now else f"{job_id}@{due}"
        payload = serialize_job(FUNCTION, (job_id,), {}, None, now)
        keys = [job_key_prefix + arq_id, QUEUE_NAME, WAKE_CHANNEL]
        args: list[bytes | str | int] = [
            payload,
            due - now + JOB_EXPIRES_MS,
            arq_id,
            due,
            int(due == now),
        ]
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._enqueue is None:
                    self._enqueue = (await self._connected()).register_script(ENQUEUE)
                await self._enqueue(keys=keys, args=args)
        except UNAVAILABLE as exc:
            raise QueueUnavailable(f"Redis queue unavailable: {exc!r}") from exc

    async def enqueue_many(self, job_ids: Sequence[str], group: str | None = None) -> None:
        if not job_ids:
            return
        name = group or DEFAULT_GROUP

        def write(pipe: Pipe, now: int) -> None:
            for job_id in job_ids:
                _write_job(pipe, job_id, job_id, now, expires_ms=JOB_EXPIRES_MS)
            pipe.rpush(GROUP_PREFIX + name, *job_ids)
            pipe.zadd(GROUPS_KEY, {name: 0}, nx=True)  # a new group's first job goes next
            pipe.publish(WAKE_CHANNEL, b"")

        await self._transaction(write, extra_s=len(job_ids) / 10_000)  # 50k jobs: ~0.6 s

    async def promote(self, limit: int) -> int:
        """Move up to `limit` batch jobs into arq's queue, one group at a time in turn."""
        if limit < 1:
            return 0
        if self._promote is None:
            self._promote = (await self._connected()).register_script(PROMOTE)
        args: list[int | str] = [timestamp_ms(), limit, GROUP_PREFIX]
        return int(await self._promote(keys=[GROUPS_KEY, QUEUE_NAME], args=args))

    async def take(self, slots: int, *, scan: int, lease_ms: int) -> list[tuple[str, int]]:
        """For a worker with `slots` free: promote that many batch jobs, then claim up to that many
        due jobs (looking at the first `scan` of arq's queue) with arq's in-progress key, held for
        `lease_ms`. One round trip, where arq's own poll takes two and its start four a job."""
        if slots < 1:
            return []
        if self._take is None:
            self._take = (await self._connected()).register_script(TAKE)
        args: list[int | str] = [
            timestamp_ms(),
            slots,
            GROUP_PREFIX,
            scan,
            in_progress_key_prefix,
            lease_ms,
        ]
        flat = await self._take(keys=[GROUPS_KEY, QUEUE_NAME], args=args)
        return [(flat[i].decode(), int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await (await self._connected()).ping())
        except (QueueUnavailable, *UNAVAILABLE):
            return False

    async def _transaction(self, write: Callable[[Pipe, int], None], extra_s: float = 0) -> None:
        try:
            async with asyncio.timeout(self._timeout_s + extra_s):
                pool = await self._connected()
                async with pool.pipeline(transaction=True) as pipe:
                    write(pipe, timestamp_ms())
                    await pipe.execute()
        except UNAVAILABLE as exc:
            raise QueueUnavailable(f"Redis queue unavailable: {exc!r}") from exc

    async def _connected(self) -> ArqRedis:
        async with self._connecting:
            if self._pool is None:
                try:
                    self._pool = await create_pool(self._settings)
                except UNAVAILABLE as exc:
                    raise QueueUnavailable(f"cannot connect to Redis: {exc!r}") from exc
        return self._pool


def _write_job(pipe: Pipe, arq_id: str, job_id: str, now: int, *, expires_ms: int) -> None:
    payload = serialize_job(FUNCTION, (job_id,), {}, None, now)
    pipe.set(job_key_prefix + arq_id, payload, px=expires_ms, nx=True)
