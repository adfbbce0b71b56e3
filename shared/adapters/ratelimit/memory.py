"""MemoryRateWindow: the per-key moving window of one process, in its memory.

Exact like `limits`' moving window (a request is allowed while fewer than `limit` were allowed in
the last `window_s` seconds), but O(1) amortised per request and with no task or thread per hit:
`limits`' memory storage schedules an expiry task that hops to a thread on every request.
Keys whose window has emptied are dropped now and then, so many keys (client addresses) seen
once do not pile up.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

PRUNE_AT_LEAST = 1024  # keys held before the first sweep of expired ones


class MemoryRateWindow:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._allowed: dict[str, deque[float]] = {}
        self._expires: dict[str, float] = {}  # when a key's window holds nothing any more
        self._prune_at = PRUNE_AT_LEAST

    async def hit(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        now = self._clock()
        times = self._current(key, now, window_s)
        if len(times) < limit:
            times.append(now)
            self._allowed[key] = times
            self._expires[key] = now + window_s
            self._prune_if_due(now)
            return True, 0
        return False, max(math.ceil(times[0] + window_s - now), 1)

    async def test(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        now = self._clock()
        times = self._current(key, now, window_s)
        if len(times) < limit:
            return True, 0
        return False, max(math.ceil(times[0] + window_s - now), 1)

    def keys(self) -> int:
        return len(self._allowed)

    def _current(self, key: str, now: float, window_s: int) -> deque[float]:
        times = self._allowed.get(key) or deque()
        while times and times[0] <= now - window_s:
            times.popleft()
        return times

    def _prune_if_due(self, now: float) -> None:
        if len(self._allowed) < self._prune_at:
            return
        for key in [k for k, expires in self._expires.items() if expires <= now]:
            del self._allowed[key], self._expires[key]
        self._prune_at = max(PRUNE_AT_LEAST, 2 * len(self._allowed))
