"""Riding out Redis outages in an arq worker.

arq's poll loop (`Worker.main` → `_poll_iteration`) has no error handling: the first
ConnectionError ends `main`, and with it the worker. `ResilientWorker` keeps polling through an
outage with capped exponential backoff, keeps running the jobs it holds, and raises `RedisGaveUp`
once Redis has been unreachable for `outage_limit_s`, so that the process exits with a failure
status for its supervisor to act on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from arq import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# Redis down, restarting (LOADING is a ConnectionError), failing over (READONLY) or too slow.
UNREACHABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
)
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0


class RedisGaveUp(Exception):
    """Redis stayed unreachable longer than the worker's outage limit."""


class Outage:
    """One continuous outage at a time: the backoff between tries, a log line when it starts and
    one when it ends (not one per failed try), and the limit after which the caller gives up."""

    def __init__(
        self, what: str, limit_s: float = math.inf, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.limit_s = limit_s
        self.clock = clock
        self.started: float | None = None
        self.failures = 0

    @property
    def down_s(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def failed(self, exc: BaseException) -> float:
        """Record a failed try; the seconds to wait before the next. Raises RedisGaveUp once the
        outage has lasted `limit_s`."""
        if self.started is None:
            self.started = self.clock()
            log.warning("%s: Redis is unreachable (%r); retrying", self.what, exc)
        self.failures += 1
        if self.down_s >= self.limit_s:
            message = f"{self.what}: Redis unreachable for {self.down_s:.0f} s; giving up"
            raise RedisGaveUp(message) from exc
        delay = min(FIRST_DELAY_S * 2.0 ** (self.failures - 1), MAX_DELAY_S)
        delay *= random.uniform(0.5, 1.0)  # workers do not all reconnect at the same instant
        return min(delay, max(self.limit_s - self.down_s, 0.0))

    def recovered(self) -> None:
        if self.started is not None:
            log.warning("%s: Redis is back after %.1f s", self.what, self.down_s)
        self.started, self.failures = None, 0


class ResilientWorker(Worker):
    """An arq Worker whose poll loop survives Redis outages of up to `outage_limit_s`."""

    def __init__(self, *args: Any, outage_limit_s: float = math.inf, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outage = Outage("arq worker", outage_limit_s)

    async def _poll_iteration(self) -> None:
        try:
            await self._poll_once()
        except UNREACHABLE as exc:
            await asyncio.sleep(self.outage.failed(exc))
        else:
            self.outage.recovered()

    async def _poll_once(self) -> None:
        """arq's own poll: take what is due from the queue, start it, record a heartbeat."""
        await super()._poll_iteration()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq counts a job as started (job_counter, semaphore) before it asks Redis whether it may
        # start it; when that Redis call fails the slot is never given back. Give it back.
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            key = job_id.decode()
            task_before = self.tasks.get(key)
            try:
                await super().start_jobs([job_id])
            except UNREACHABLE:
                if self.tasks.get(key) is task_before:
                    self._release_sem_dec_counter_on_complete()
                raise

    async def run_job(self, job_id: str, score: int) -> None:
        # arq's own bookkeeping around a job (reading it, recording its end or its retry) needs
        # Redis. The store already holds the job's truth, so a failure there is not the job's:
        # arq runs it again once its in-progress key expires, or, if Redis lost it, the lost-job
        # sweep does (worker/recovery.py).
        try:
            await super().run_job(job_id, score)
        except UNREACHABLE as exc:
            log.warning("job %s: Redis unreachable for arq's bookkeeping (%r)", job_id, exc)
