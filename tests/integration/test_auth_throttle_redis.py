"""With REDIS_URL, failed authentications are counted in Redis: every API process sees them."""

from __future__ import annotations

from typing import Any

import pytest

from api.ratelimit import TenantRateLimiter
from shared.adapters.ratelimit.redis import RedisRateWindow
from shared.factory import ServiceFactory
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


async def test_failures_counted_by_one_process_throttle_another(
    redis_url: str, redis_db: Any
) -> None:
    settings = make_settings(redis_url=redis_url, auth_failure_limit="3/minute")
    one, other = (
        TenantRateLimiter(settings.auth_failure_limit, ServiceFactory(settings).build_rate_window())
        for _ in range(2)
    )
    assert isinstance(one.window, RedisRateWindow)
    key = "auth:203.0.113.9"
    assert [await one.hit(key) for _ in range(3)] == [None] * 3
    wait_s = await other.test(key)
    assert wait_s is not None and 1 <= wait_s <= 60
    assert await other.hit(key) is not None
    assert await other.test("auth:203.0.113.10") is None
