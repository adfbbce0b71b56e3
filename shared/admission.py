"""Admission: how much new work the service takes while its backlog grows (backpressure).

- MAX_QUEUED_JOBS: while that many jobs are queued, a submit is refused (Overloaded: 503 with
  Retry-After), and so is a batch whose jobs would take the backlog past it. The backlog is the
  store's count of queued jobs, read at most every REFRESH_S, plus what this process accepted
  since; a cache hit adds nothing to it and is never refused.
- Embedded mode, where the jobs run in the API's own event loop: a submit waits while more than
  LOCAL_BACKLOG_PER_SLOT jobs a worker slot are waiting ahead of it (of a higher priority, or its
  own tenant's at its priority: shared/lanes.py), up to LOCAL_WAIT_S (then Overloaded). So
  accepting cannot take the whole loop from running: under a sustained flood the API accepts as
  fast as its workers finish, and the backlog stays short.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol, runtime_checkable

from shared.errors import Overloaded
from shared.lanes import Lane
from shared.models import JobStatus
from shared.ports import JobStore

log = logging.getLogger(__name__)

REFRESH_S = 0.5
RETRY_AFTER_S = 5
LOCAL_BACKLOG_PER_SLOT = 50
LOCAL_WAIT_S = 2.0


@runtime_checkable
class LocalQueue(Protocol):
    """An in-process queue: its length is exact, and its workers say when they take a job."""

    concurrency: int

    def __len__(self) -> int: ...

    async def wait_below(self, length: int, timeout_s: float, lane: Lane | None = None) -> bool:
        """Wait until fewer than `length` jobs are waiting (ahead of a job of `lane`, when
        given); False if `timeout_s` passed first."""


class Admission:
    def __init__(self, store: JobStore, max_queued: int, local: LocalQueue | None = None) -> None:
        self.store = store
        self.max_queued = max_queued  # 0: no limit
        self.local = local
        self._counted = 0
        self._counted_at = -math.inf
        self._accepted_since = 0
        self._counting: asyncio.Task[None] | None = None

    async def admit(self, jobs: int, lane: Lane | None = None) -> None:
        """Take `jobs` new queued jobs, or raise Overloaded. `lane`: theirs; embedded, only the
        jobs that would run before them count (a higher priority's, and their tenant's own), so
        one tenant's big backlog does not turn another tenant's submits away."""
        if jobs <= 0:
            return
        if self.max_queued:
            backlog = await self._backlog()
            if backlog + jobs > self.max_queued:
                raise Overloaded(
                    f"{backlog} jobs are waiting (MAX_QUEUED_JOBS is {self.max_queued}); "
                    "retry later",
                    retry_after_s=RETRY_AFTER_S,
                )
        if self.local is not None:
            high_water = LOCAL_BACKLOG_PER_SLOT * self.local.concurrency
            if not await self.local.wait_below(high_water, LOCAL_WAIT_S, lane):
                raise Overloaded(
                    "the workers are behind; retry later", retry_after_s=math.ceil(LOCAL_WAIT_S)
                )
        self._accepted_since += jobs

    async def _backlog(self) -> int:
        if self.local is not None:  # exact and free
            return len(self.local)
        if time.monotonic() - self._counted_at >= REFRESH_S:
            if self._counting is None or self._counting.done():  # one count at a time
                self._counting = asyncio.create_task(self._count())
            if self._counted_at == -math.inf:  # nothing known yet: wait for the first count
                await asyncio.shield(self._counting)
        return self._counted + self._accepted_since

    async def _count(self) -> None:
        try:
            counts = await self.store.count_unfinished()
        except Exception:  # admission fails open: the store's own errors surface on the write
            log.warning("could not count the backlog; admitting meanwhile", exc_info=True)
        else:
            self._counted, self._accepted_since = counts[JobStatus.queued], 0
        self._counted_at = time.monotonic()
