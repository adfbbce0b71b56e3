"""LocalJobStreams: each job's events in this process's memory (embedded mode: the workers run
in the API's own event loop). Ids are one counter's numbers, so they increase across jobs."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.adapters.streams import ENDED_KEEP_S, KEEP_S, MAX_EVENTS
from shared.job_stream import StreamEvent

if TYPE_CHECKING:
    from shared.ports import JobStreams

MAX_JOBS = 10_000  # streams kept at once; the oldest goes first
SWEEP_EVERY_S = 1.0  # expired streams are looked for at most this often


@dataclass
class _Log:
    events: deque[tuple[int, StreamEvent]]
    expires: float = 0.0
    readers: set[asyncio.Event] = field(default_factory=set)


class LocalJobStreams:
    def __init__(
        self,
        *,
        max_events: int = MAX_EVENTS,
        keep_s: float = KEEP_S,
        ended_keep_s: float = ENDED_KEEP_S,
        max_jobs: int = MAX_JOBS,
    ) -> None:
        self.max_events, self.max_jobs = max_events, max_jobs
        self.keep_s, self.ended_keep_s = keep_s, ended_keep_s
        self._logs: dict[str, _Log] = {}
        self._last_id = 0
        self._swept_at = 0.0

    async def publish(self, job_id: str, event: StreamEvent) -> None:
        self._forget_expired()
        log = self._log(job_id)
        self._last_id += 1
        log.events.append((self._last_id, event))
        log.expires = time.monotonic() + (self.ended_keep_s if event.ends else self.keep_s)
        for reader in log.readers:
            reader.set()

    async def read(self, job_id: str, after: str, wait_s: float) -> list[tuple[str, StreamEvent]]:
        last = _number(after)
        found = self._after(job_id, last)
        if found or wait_s <= 0:
            return found
        log, woken = self._log(job_id), asyncio.Event()
        log.readers.add(woken)
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await woken.wait()
        finally:
            log.readers.discard(woken)
        return self._after(job_id, last)

    def _after(self, job_id: str, last: int) -> list[tuple[str, StreamEvent]]:
        log = self._logs.get(job_id)
        events = log.events if log is not None else ()
        return [(str(n), event) for n, event in events if n > last]

    def _log(self, job_id: str) -> _Log:
        log = self._logs.get(job_id)
        if log is None:
            if len(self._logs) >= self.max_jobs:
                del self._logs[next(iter(self._logs))]
            log = self._logs[job_id] = _Log(deque(maxlen=self.max_events))
            log.expires = time.monotonic() + self.keep_s
        return log

    def _forget_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_EVERY_S:
            return
        self._swept_at = now
        for job_id in [j for j, log in self._logs.items() if log.expires < now and not log.readers]:
            del self._logs[job_id]

    @property
    def kept(self) -> int:
        """How many jobs' streams are held now."""
        return len(self._logs)

    async def close(self) -> None:
        self._logs.clear()


def _number(event_id: str) -> int:
    """An id this adapter gave ("0": before the first); anything else reads from the start."""
    head = event_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


if TYPE_CHECKING:
    _satisfies_port: JobStreams = LocalJobStreams()
