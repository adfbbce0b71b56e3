"""The RateWindow port: a per-key request budget. `api.ratelimit.TenantRateLimiter` counts tenants'
requests (RATE_LIMIT) and failed authentications per client address (AUTH_FAILURE_LIMIT) in the
one window `ServiceFactory.build_rate_window` picks: `memory` (one process), `redis` (every
process with REDIS_URL) or `dynamodb` (Lambda containers, which share no memory)."""

from __future__ import annotations

from typing import Protocol


class RateWindow(Protocol):
    async def hit(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        """Spend one of `key`'s `limit` requests per `window_s` seconds. Returns whether the
        request is allowed and, when it is not, the whole seconds until one would be (else 0)."""
        ...

    async def test(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        """Whether `key` has room for one more request now, without spending it; when it has
        not, the whole seconds until it would (else 0)."""
        ...
