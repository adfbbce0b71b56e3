"""MemoryResultCache: a bounded LRU with a per-entry time to live, for one process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from shared.models import Completion

Clock = Callable[[], float]


class MemoryResultCache:
    """Least recently used entries go first once `max_entries` is reached; expired entries are
    dropped when read (and, like any entry, when they fall off the LRU end)."""

    def __init__(self, max_entries: int = 10_000, clock: Clock = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Completion]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Completion | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value.model_copy(deep=True)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        hits = {key: await self.get(key) for key in dict.fromkeys(keys)}
        return {key: value for key, value in hits.items() if value is not None}

    async def set(self, key: str, value: Completion, ttl_s: int) -> None:
        if ttl_s <= 0:
            await self.delete(key)
            return
        self._entries[key] = (self._clock() + ttl_s, value.model_copy(deep=True))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._entries.clear()
