"""InProcessJobQueue: an asyncio worker pool inside the API process (embedded mode).

Jobs wait in `Turns` (shared/lanes.py): a higher priority first; within a priority, single jobs
(and retries, once due) first, then tenants and their batches in turn. Nothing here is durable:
the store is. Jobs still queued when the process stops are found again by
`Sweeper.recover_after_restart()` on the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from shared.errors import QueueUnavailable
from shared.lanes import Lane, Turns, current_lane, delivering
from shared.logs import bound
from shared.ports import JobHandler

log = logging.getLogger(__name__)


class InProcessJobQueue:
    def __init__(self, concurrency: int, *, drain_timeout_s: float = 30.0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.drain_timeout_s = drain_timeout_s
        self._turns = Turns()
        self._available = asyncio.Semaphore(0)  # one permit per waiting job
        self._workers: list[asyncio.Task[None]] = []
        self._idle: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._started = False
        self._closed = False
        self._room: deque[tuple[int, Lane | None, asyncio.Future[None]]] = deque()

    def __len__(self) -> int:
        """Jobs waiting now (delayed ones not counted)."""
        return len(self._turns)

    async def start(self, handler: JobHandler | None = None) -> None:
        self._started = True
        if handler is not None and not self._workers:
            self._workers = [
                asyncio.create_task(self._work(handler), name=f"inprocess-worker-{n}")
                for n in range(self.concurrency)
            ]

    async def enqueue(self, job_id: str, delay_s: float = 0, lane: Lane | None = None) -> None:
        self._refuse_when_closed()
        lane = current_lane(lane)
        if delay_s > 0:
            self._schedule(job_id, delay_s, lane)
        else:
            self._put_single(job_id, lane)

    async def enqueue_many(
        self, job_ids: Sequence[str], group: str | None = None, lane: Lane | None = None
    ) -> None:
        self._refuse_when_closed()
        if job_ids:
            self._turns.put_batch(list(job_ids), group, current_lane(lane))
            for _ in job_ids:
                self._available.release()

    async def ping(self) -> bool:
        return self._started and not self._closed

    def waiting_ahead(self, lane: Lane | None = None) -> int:
        """Jobs waiting now; with `lane`, those a new job of that lane would wait for: every job
        of a higher priority and its tenant's own at its priority (`Turns.ahead_of`)."""
        return len(self) if lane is None else self._turns.ahead_of(lane)

    async def wait_below(self, length: int, timeout_s: float, lane: Lane | None = None) -> bool:
        """Wait until fewer than `length` jobs are waiting (ahead of `lane`, when given); woken in
        turn, as workers take jobs; False if `timeout_s` passed first."""
        if self.waiting_ahead(lane) < length:
            return True
        room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append((length, lane, room))
        try:
            async with asyncio.timeout(timeout_s):
                await room
        except TimeoutError:
            return self.waiting_ahead(lane) < length
        finally:
            if not room.done():
                room.cancel()
        return True

    async def close(self) -> None:
        """Take no new work, let running handlers finish (up to `drain_timeout_s`), stop."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for idle in list(self._idle):
            idle.cancel()
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=self.drain_timeout_s)
            for task in late:
                log.warning("cancelling a job still running after %ss", self.drain_timeout_s)
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    def _refuse_when_closed(self) -> None:
        if self._closed:
            raise QueueUnavailable("the in-process queue is shutting down")

    def _put_single(self, job_id: str, lane: Lane) -> None:
        self._turns.put_single(job_id, lane)
        self._available.release()

    def _schedule(self, job_id: str, delay_s: float, lane: Lane) -> None:
        def release() -> None:
            self._timers.discard(timer)
            self._put_single(job_id, lane)

        timer = asyncio.get_running_loop().call_later(delay_s, release)
        self._timers.add(timer)

    def _take(self) -> tuple[str, Lane]:
        taken = self._turns.take()
        for waiter in [w for w in self._room if w[2].done()]:  # gave up waiting
            self._room.remove(waiter)
        for waiter in self._room:  # one job taken, one submit let in: the first that fits
            below, lane, room = waiter
            if self.waiting_ahead(lane) < below:
                self._room.remove(waiter)
                room.set_result(None)
                break
        return taken

    async def _work(self, handler: JobHandler) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._closed:
            self._idle.add(me)
            try:
                await self._available.acquire()
            finally:
                self._idle.discard(me)
            await self._handle(handler, *self._take())

    @staticmethod
    async def _handle(handler: JobHandler, job_id: str, lane: Lane) -> None:
        with bound(job_id=job_id), delivering(lane):
            try:
                await handler(job_id)
            except Exception:
                log.exception("job handler failed for %s; the worker carries on", job_id)
