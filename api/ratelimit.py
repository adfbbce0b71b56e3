"""Per-tenant request budget (RATE_LIMIT) and failed-authentication budget (AUTH_FAILURE_LIMIT)
over the composition root's `RateWindow`; fails open on outages."""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse

from api.auth import authenticate
from api.errors import rate_limited
from shared.adapters.ratelimit import RateWindow

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0


class TenantRateLimiter:
    """`rate` requests per key (a tenant; `auth:<address>` for failed authentications) in
    `window`: process memory, Redis, or DynamoDB, as `ServiceFactory.build_rate_window` chose."""

    def __init__(self, rate: str, window: RateWindow) -> None:
        self.item: RateLimitItem = parse(rate)
        self.window = window
        self._warned_at = -math.inf

    async def hit(self, key: str) -> float | None:
        """Spend one request: None when allowed, else the seconds until `key` may retry."""
        return await self._ask(key, spend=True)

    async def test(self, key: str) -> float | None:
        """Spend nothing: None when `key` has room for a request, else the seconds until it has."""
        return await self._ask(key, spend=False)

    async def _ask(self, key: str, *, spend: bool) -> float | None:
        ask = self.window.hit if spend else self.window.test
        try:
            allowed, wait_s = await ask(key, self.item.amount, self.item.get_expiry())
        except Exception:
            self._warn_failing_open()
            return None
        return None if allowed else max(float(wait_s), 1.0)

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
    raise rate_limited(f"rate limit of {limiter.item} exceeded", retry_after)
