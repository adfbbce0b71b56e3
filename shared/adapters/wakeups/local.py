"""LocalJobWakeups: job-finished wake-ups inside one process (embedded mode: the workers are in
the API's own event loop). One asyncio.Event per job that somebody waits on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.ports import JobWakeups


class LocalJobWakeups:
    def __init__(self) -> None:
        self._watched: dict[str, tuple[asyncio.Event, int]] = {}

    @contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        event, watchers = self._watched.get(job_id) or (asyncio.Event(), 0)
        self._watched[job_id] = (event, watchers + 1)
        try:
            yield event
        finally:
            event, watchers = self._watched[job_id]
            if watchers > 1:
                self._watched[job_id] = (event, watchers - 1)
            else:
                del self._watched[job_id]

    async def notify(self, job_ids: Sequence[str]) -> None:
        self.wake(job_ids)

    def wake(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            watched = self._watched.get(job_id)
            if watched is not None:
                watched[0].set()

    @property
    def watched(self) -> int:
        """How many jobs somebody waits on now."""
        return len(self._watched)

    async def close(self) -> None:
        return None


if TYPE_CHECKING:
    _satisfies_port: JobWakeups = LocalJobWakeups()
