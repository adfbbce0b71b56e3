"""MemoryProviderQuota: provider quotas in this process's memory (embedded mode, where this
process is the only worker). Exact moving windows: a call is allowed while fewer than `rpm`
slots were taken, and fewer than `tpm` tokens spent, in the last window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TypeVar

from shared.quotas import QUOTA_WINDOW_S, QuotaLimits, limits_of, log_wait_s, weighted_wait_s

T = TypeVar("T")


class MemoryProviderQuota:
    def __init__(
        self,
        limits: Mapping[str, QuotaLimits],
        *,
        window_s: float = QUOTA_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits, self._window_s, self._clock = dict(limits), window_s, clock
        self._calls: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._paused_until: dict[str, float] = {}

    async def acquire(self, provider: str) -> float:
        now = self._clock()
        wait = self._wait(provider, now)
        if wait == 0 and limits_of(self._limits, provider).rpm > 0:
            self._calls.setdefault(provider, deque()).append(now)
        return wait

    async def wait_s(self, provider: str) -> float:
        return self._wait(provider, self._clock())

    async def spend_tokens(self, provider: str, tokens: int) -> None:
        if tokens > 0 and limits_of(self._limits, provider).tpm > 0:
            self._tokens.setdefault(provider, deque()).append((self._clock(), tokens))

    async def pause(self, provider: str, seconds: float) -> None:
        until = self._clock() + seconds
        self._paused_until[provider] = max(self._paused_until.get(provider, 0.0), until)

    async def close(self) -> None:
        return None

    def _wait(self, provider: str, now: float) -> float:
        limits = limits_of(self._limits, provider)
        paused = max(self._paused_until.get(provider, 0.0) - now, 0.0)
        calls = self._held(self._calls.get(provider), now, lambda at: at)
        spent = self._held(self._tokens.get(provider), now, lambda entry: entry[0])
        return max(
            paused,
            log_wait_s(list(calls), limits.rpm, now, self._window_s),
            weighted_wait_s(list(spent), limits.tpm, now, self._window_s),
        )

    def _held(self, entries: deque[T] | None, now: float, at: Callable[[T], float]) -> deque[T]:
        """The entries still in the window (older ones dropped)."""
        if entries is None:
            return deque()
        while entries and at(entries[0]) + self._window_s <= now:
            entries.popleft()
        return entries
