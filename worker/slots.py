"""Slots: what one worker process is running, whoever delivered it.

arq runs the jobs it delivers (single jobs, retries) and caps them at its `max_jobs`; the batch
runner takes batch jobs only into the slots those leave free. Both register here, so the
supervisor can wait for them, cancel them on the way out, and know when arq's bookkeeping of a
job has ended (arq's documented `after_job_end` hook).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import Any


class Slots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.arq_jobs: set[asyncio.Task[Any]] = set()
        self.batch_jobs: set[asyncio.Task[Any]] = set()
        self.unsettled: set[str] = set()  # arq job ids whose result arq has not recorded yet
        self._changed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.capacity - len(self.arq_jobs) - len(self.batch_jobs)

    @property
    def idle(self) -> bool:
        return not self.arq_jobs and not self.batch_jobs

    @contextmanager
    def arq_job(self, arq_id: str) -> Iterator[None]:
        """Around the run of a job arq delivered (inside arq's job function)."""
        task = asyncio.current_task()
        assert task is not None
        self.arq_jobs.add(task)
        self.unsettled.add(arq_id)
        try:
            yield
        finally:
            self.arq_jobs.discard(task)
            self.poke()

    def settled(self, arq_id: str) -> None:
        self.unsettled.discard(arq_id)
        self.poke()

    def start_batch_job(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self.batch_jobs.add(task)
        task.add_done_callback(self._batch_job_done)
        return task

    def _batch_job_done(self, task: asyncio.Task[Any]) -> None:
        self.batch_jobs.discard(task)
        self.poke()

    def cancel_all(self) -> None:
        for task in (*self.arq_jobs, *self.batch_jobs):
            task.cancel()

    def poke(self) -> None:
        """Wake whoever waits in `until`, to look again."""
        self._changed.set()

    async def until(self, done: Callable[[], bool], timeout_s: float | None = None) -> bool:
        """Wait until `done()` holds (checked whenever a slot changes or `poke()` is called);
        False if `timeout_s` passed first."""
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
                return True
        return done()
