"""RedisRateWindow: `limits`' moving window kept in Redis, shared by every API process that has
REDIS_URL."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

TIMEOUT_S = 1.0


def storage_uri(redis_url: str) -> str:
    """`limits`' async Redis URI for a `redis://`, `rediss://` or `unix://` URL."""
    if redis_url.startswith("unix://"):
        return f"async+redis+{redis_url}"
    return f"async+{redis_url}"


class RedisRateWindow:
    """Raises when Redis is unreachable or slower than TIMEOUT_S; TenantRateLimiter then lets
    requests through."""

    def __init__(self, redis_url: str) -> None:
        storage = storage_from_string(
            storage_uri(redis_url),
            implementation="redispy",
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        item = RateLimitItemPerSecond(limit, window_s)
        if await self._limiter.hit(item, key):
            return True, 0
        return False, await self._wait_s(item, key)

    async def test(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        item = RateLimitItemPerSecond(limit, window_s)
        if await self._limiter.test(item, key):
            return True, 0
        return False, await self._wait_s(item, key)

    async def _wait_s(self, item: RateLimitItem, key: str) -> int:
        stats = await self._limiter.get_window_stats(item, key)
        return max(math.ceil(stats.reset_time - time.time()), 1)
