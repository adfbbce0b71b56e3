"""WakingWorker: an arq worker that polls when there is work for it, not only on a timer.

arq polls its queue every `poll_delay`: a new job waits for the next tick (25 ms on average at
0.05 s), and a slot that comes free stays empty until then. Here arq's own loop does not sleep;
between polls the worker waits for a wake-up, or `idle_poll_s` at most:
- a producer that enqueues a job publishes on WAKE_CHANNEL (ArqJobQueue does, in the same
  transaction), and `listen_for_work` wakes the worker;
- one of its own jobs ending frees a slot and wakes it.
`idle_poll_s` still covers what nobody announces: delayed retries coming due, a wake-up lost while
the subscription was reconnecting.

A poll is one round trip (`take`, ArqJobQueue.take): promote batch jobs into the slots that due
single jobs leave free, and claim due jobs with arq's in-progress key, as arq's own start_jobs
does with four round trips a job. The claimed jobs then run through arq's own `run_job`. So batch
jobs flow as fast as slots free up, and a busy worker spends its Redis round trips on its jobs,
not on finding them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.adapters.queue.arq import WAKE_CHANNEL
from worker.outage import ResilientWorker

log = logging.getLogger(__name__)

Take = Callable[..., Awaitable[list[tuple[str, int]]]]
RESUBSCRIBE_S = 1.0


class WakingWorker(ResilientWorker):
    def __init__(
        self, *args: Any, idle_poll_s: float, take: Take | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **{**kwargs, "poll_delay": 0})  # the waiting happens here
        self.idle_poll_s = idle_poll_s
        self.take = take
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def _poll_iteration(self) -> None:
        self._wake.clear()  # a wake-up arriving from now on starts the next poll at once
        await super()._poll_iteration()
        if not self.burst:
            with suppress(TimeoutError):
                async with asyncio.timeout(self.idle_poll_s):
                    await self._wake.wait()

    async def _poll_once(self) -> None:
        if self.take is None:  # arq's own poll (burst mode: everything was promoted at start)
            await super()._poll_once()
            return
        free = self.max_jobs - self.job_counter
        if self.allow_pick_jobs and free > 0:
            lease_ms = round(self.in_progress_timeout_s * 1000)
            for job_id, score in await self.take(
                free, scan=self.queue_read_limit, lease_ms=lease_ms
            ):
                await self._start(job_id, score)
        for job_id, task in list(self.tasks.items()):  # as arq's poll does
            if task.done():
                del self.tasks[job_id]
                task.result()
        await self.heart_beat()

    async def _start(self, job_id: str, score: int) -> None:
        """Run a job claimed by `take`, with arq's own bookkeeping (a slot, a task)."""
        await self.sem.acquire()  # never waits: `take` claimed no more jobs than free slots
        self.job_counter += 1
        task = asyncio.create_task(self.run_job(job_id, score))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._wake.set()  # a slot came free: refill it now


async def listen_for_work(redis_url: str, worker: WakingWorker) -> None:
    """Wake `worker` whenever a producer announces new work; resubscribes after a failure."""
    while True:
        client = Redis.from_url(redis_url, socket_connect_timeout=2.0)
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(WAKE_CHANNEL)
                worker.wake()  # whatever was announced while not subscribed
                async for _ in pubsub.listen():
                    worker.wake()
        except (RedisError, OSError) as exc:
            log.debug("work announcements: subscription lost (%r); resubscribing", exc)
        finally:
            await client.aclose()
        await asyncio.sleep(RESUBSCRIBE_S)
