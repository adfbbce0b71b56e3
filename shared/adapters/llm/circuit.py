"""A circuit breaker that stops calling a provider that keeps failing."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from shared.models import utcnow

RECENT_S = 300.0  # "recent errors": within the last five minutes
RECENT_KEPT = 1_000  # failure times kept for that count


class CircuitState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """closed → open after `failure_threshold` consecutive failures; after `cooldown_s` the next
    call is let through as a single probe (half-open): success closes, failure opens again."""

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = max(failure_threshold, 1)
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = CircuitState.closed
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False
        # for the console (shared/heartbeats.py ProviderHealth): calls, failures, the last error
        self.calls = 0
        self.failed_at: deque[float] = deque(maxlen=RECENT_KEPT)
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe is in flight at a time."""
        if self.state == CircuitState.open and self.clock() - self.opened_at >= self.cooldown_s:
            self.state = CircuitState.half_open
        if self.state == CircuitState.half_open:
            if self._probing:
                return False
            self._probing = True
        allowed = self.state != CircuitState.open
        self.calls += allowed  # every call let through (the console's count)
        return allowed

    def record_success(self) -> None:
        self.state, self.failures, self._probing = CircuitState.closed, 0, False

    def record_failure(self, error: str | None = None) -> None:
        self.failed_at.append(self.clock())
        self.last_error, self.last_error_at = error, utcnow()
        self.failures += 1
        if self.state == CircuitState.half_open or self.failures >= self.failure_threshold:
            self.state, self.opened_at = CircuitState.open, self.clock()
        self._probing = False

    def release(self) -> None:
        """The call ended with no verdict (e.g. cancelled): let the next call probe instead."""
        self._probing = False

    def wait_s(self, probe_poll_s: float = 1.0) -> float:
        """0 when `allow()` would let a call through; otherwise roughly how long until it might
        (the rest of the cooldown, or `probe_poll_s` while another call is probing)."""
        if self.state == CircuitState.closed:
            return 0.0
        if self.state == CircuitState.open:
            return self.retry_in_s()
        return probe_poll_s if self._probing else 0.0

    def recent_failures(self, within_s: float = RECENT_S) -> int:
        since = self.clock() - within_s
        return sum(1 for at in self.failed_at if at >= since)

    def retry_in_s(self) -> float:
        return max(self.cooldown_s - (self.clock() - self.opened_at), 0.0)
