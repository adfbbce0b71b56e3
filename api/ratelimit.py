"""Per-tenant request budget (RATE_LIMIT) with the `limits` library; fails open on outages."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from api.auth import authenticate
from api.errors import ApiError
from shared.adapters.ratelimit import RateWindow
from shared.adapters.ratelimit.memory import MemoryRateWindow
from shared.config import Settings

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 1.0
WARN_EVERY_S = 60.0


def storage_uri(redis_url: str | None) -> str:
    """`async+redis://…` for a Redis URL (shared by all API processes), else process memory."""
    if redis_url and redis_url.startswith(("redis://", "rediss://")):
        return f"async+{redis_url}"
    if redis_url and redis_url.startswith("unix://"):
        return f"async+redis+{redis_url}"
    return "async+memory://"


class TenantRateLimiter:
    """A moving window of `rate` requests per key (a tenant; `auth:<address>` for failed
    authentications); with `window`, that window instead: the process's own memory
    (`from_settings` without Redis), or one shared by every process (DynamoDB on Lambda, where
    containers share no memory)."""

    def __init__(
        self, rate: str, uri: str = "async+memory://", window: RateWindow | None = None
    ) -> None:
        self.item: RateLimitItem = parse(rate)
        options: dict[str, float | str | bool] = {}
        if uri.startswith("async+redis"):
            options = {
                "implementation": "redispy",
                "socket_timeout": REDIS_TIMEOUT_S,
                "socket_connect_timeout": REDIS_TIMEOUT_S,
            }
        self.limiter = MovingWindowRateLimiter(storage_from_string(uri, **options))
        self.window = window
        self._warned_at = -math.inf

    @classmethod
    def from_settings(
        cls, settings: Settings, window: RateWindow | None = None, rate: str | None = None
    ) -> TenantRateLimiter:
        """RATE_LIMIT, or `rate`, kept where the settings say."""
        uri = storage_uri(settings.redis_url)
        if window is None and uri == "async+memory://":
            window = MemoryRateWindow()
        return cls(rate or settings.rate_limit, uri, window)

    async def hit(self, key: str) -> float | None:
        """Spend one request: None when allowed, else the seconds until `key` may retry."""
        return await self._ask(key, spend=True)

    async def test(self, key: str) -> float | None:
        """Spend nothing: None when `key` has room for a request, else the seconds until it has."""
        return await self._ask(key, spend=False)

    async def _ask(self, key: str, *, spend: bool) -> float | None:
        try:
            if self.window is not None:
                window_ask = self.window.hit if spend else self.window.test
                allowed, wait_s = await window_ask(key, self.item.amount, self.item.get_expiry())
                return None if allowed else max(float(wait_s), 1.0)
            limits_ask = self.limiter.hit if spend else self.limiter.test
            if await limits_ask(self.item, "tenant", key):
                return None
            stats = await self.limiter.get_window_stats(self.item, "tenant", key)
        except Exception:
            self._warn_failing_open()
            return None
        return max(stats.reset_time - time.time(), 1.0)

    def _warn_failing_open(self) -> None:
        if time.monotonic() - self._warned_at >= WARN_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning("rate limit storage unreachable; allowing requests", exc_info=True)


async def enforce_rate_limit(
    request: Request, tenant: Annotated[str, Depends(authenticate)]
) -> str:
    """The caller's tenant; 429 with Retry-After once it has spent its RATE_LIMIT."""
    limiter: TenantRateLimiter = request.app.state.limiter
    retry_after = await limiter.hit(tenant)
    if retry_after is None:
        return tenant
    seconds = math.ceil(retry_after)
    raise ApiError(
        429,
        "rate_limited",
        f"rate limit of {limiter.item} exceeded; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )
