"""MemoryRateWindow: the per-tenant moving window of one process, in its memory.

Exact like `limits`' moving window (a request is allowed while fewer than `limit` were allowed in
the last `window_s` seconds), but O(1) amortised per request and with no task or thread per hit:
`limits`' memory storage schedules an expiry task that hops to a thread on every request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class MemoryRateWindow:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._allowed: dict[str, deque[float]] = {}

    async def hit(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        now = self._clock()
        times = self._allowed.get(key)
        if times is None:
            times = self._allowed[key] = deque()
        while times and times[0] <= now - window_s:
            times.popleft()
        if len(times) < limit:
            times.append(now)
            return True, 0
        return False, max(math.ceil(times[0] + window_s - now), 1)
