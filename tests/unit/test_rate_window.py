"""MemoryRateWindow: the in-process moving window behind RATE_LIMIT without Redis; and the one
place that picks the window."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.ratelimit.dynamodb import DynamoDbRateWindow
from shared.adapters.ratelimit.memory import MemoryRateWindow
from shared.adapters.ratelimit.redis import RedisRateWindow
from shared.factory import ServiceFactory
from tests.conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_moving_window_of_limit_requests_per_window() -> None:
    clock = Clock()
    window = MemoryRateWindow(clock)
    assert [await window.hit("t1", 2, 60) for _ in range(2)] == [(True, 0), (True, 0)]
    clock.now += 10
    assert await window.hit("t1", 2, 60) == (False, 50)  # the first leaves the window in 50 s
    assert await window.hit("t2", 2, 60) == (True, 0)  # tenants have windows of their own
    clock.now += 50  # both have left the window
    assert [await window.hit("t1", 2, 60) for _ in range(2)] == [(True, 0), (True, 0)]
    assert await window.hit("t1", 2, 60) == (False, 60)


async def test_a_refused_request_is_not_counted() -> None:
    clock = Clock()
    window = MemoryRateWindow(clock)
    await window.hit("t1", 1, 60)
    for _ in range(5):
        assert (await window.hit("t1", 1, 60))[0] is False
    clock.now += 60
    assert await window.hit("t1", 1, 60) == (True, 0)


async def test_the_wait_is_at_least_a_second() -> None:
    clock = Clock()
    window = MemoryRateWindow(clock)
    await window.hit("t1", 1, 1)
    clock.now += 0.999
    assert await window.hit("t1", 1, 1) == (False, 1)


async def test_a_test_answers_as_a_hit_would_and_spends_nothing() -> None:
    clock = Clock()
    window = MemoryRateWindow(clock)
    assert await window.test("a", 2, 60) == (True, 0)
    await window.hit("a", 2, 60)
    clock.now += 10
    assert [await window.test("a", 2, 60) for _ in range(3)] == [(True, 0)] * 3
    await window.hit("a", 2, 60)
    assert await window.test("a", 2, 60) == (False, 50)
    clock.now += 50
    assert await window.test("a", 2, 60) == (True, 0)


async def test_keys_whose_window_has_emptied_are_dropped() -> None:
    clock = Clock()
    window = MemoryRateWindow(clock)
    for n in range(5000):  # addresses seen once
        await window.hit(f"auth:{n}", 3, 60)
    assert window.keys() == 5000
    clock.now += 61
    for n in range(5000, 9000):  # the sweep comes when the count has doubled
        await window.hit(f"auth:{n}", 3, 60)
    assert window.keys() < 5000  # the first 5000 have gone
    assert await window.hit("auth:8999", 1, 60) == (False, 60)  # live ones are kept


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({}, MemoryRateWindow),
        ({"redis_url": "redis://127.0.0.1:1", "queue_backend": "arq"}, RedisRateWindow),
        ({"store_backend": "dynamodb", "cache_backend": "dynamodb"}, DynamoDbRateWindow),
        ({"store_backend": "dynamodb", "redis_url": "redis://127.0.0.1:1"}, RedisRateWindow),
    ],
)
def test_the_root_picks_the_window_every_api_process_can_share(
    settings: dict[str, Any], kind: type
) -> None:
    assert isinstance(ServiceFactory(make_settings(**settings)).build_rate_window(), kind)
