"""Riding out Redis outages: what counts as Redis being unreachable, and `Outage`, the backoff
between tries and the limit after which a worker gives up (worker/supervisor.py uses it around
arq's Worker, the batch runner and the lost-job sweep around their own Redis calls).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import QueueUnavailable

log = logging.getLogger(__name__)

# Redis down, restarting (LOADING is a ConnectionError), failing over (READONLY) or too slow.
UNREACHABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
    QueueUnavailable,
)
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0


class RedisGaveUp(Exception):
    """Redis stayed unreachable longer than the worker's outage limit."""


class Outage:
    """One continuous outage at a time: the backoff between tries, a log line when it starts and
    one when it ends (not one per failed try), and the limit after which the caller gives up."""

    def __init__(
        self, what: str, limit_s: float = math.inf, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.limit_s = limit_s
        self.clock = clock
        self.started: float | None = None
        self.failures = 0

    @property
    def down_s(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def failed(self, exc: BaseException) -> float:
        """Record a failed try; the seconds to wait before the next. Raises RedisGaveUp once the
        outage has lasted `limit_s`."""
        if self.started is None:
            self.started = self.clock()
            log.warning("%s: Redis is unreachable (%r); retrying", self.what, exc)
        self.failures += 1
        if self.down_s >= self.limit_s:
            message = f"{self.what}: Redis unreachable for {self.down_s:.0f} s; giving up"
            raise RedisGaveUp(message) from exc
        delay = min(FIRST_DELAY_S * 2.0 ** (self.failures - 1), MAX_DELAY_S)
        delay *= random.uniform(0.5, 1.0)  # workers do not all reconnect at the same instant
        return min(delay, max(self.limit_s - self.down_s, 0.0))

    def recovered(self) -> None:
        if self.started is not None:
            log.warning("%s: Redis is back after %.1f s", self.what, self.down_s)
        self.started, self.failures = None, 0
