"""worker.outage: the arq worker's poll loop rides out Redis outages, and gives up after a limit."""

from __future__ import annotations

import math
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from worker.outage import MAX_DELAY_S, Outage, RedisGaveUp, ResilientWorker

DOWN = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_backs_off_up_to_a_cap_and_gives_up_at_its_limit() -> None:
    clock = Clock()
    outage = Outage("test", limit_s=60, clock=clock)
    delays = []
    while clock.now < 1059:
        delays.append(outage.failed(DOWN))
        clock.now += delays[-1]
    assert delays[0] <= 0.25
    assert max(delays) <= MAX_DELAY_S
    assert sum(delays) <= 60 + 1e-9  # never sleeps past the limit
    clock.now = 1060
    with pytest.raises(RedisGaveUp, match="60 s"):
        outage.failed(DOWN)


def test_a_recovery_starts_the_next_outage_afresh() -> None:
    clock = Clock()
    outage = Outage("test", limit_s=10, clock=clock)
    for _ in range(5):
        outage.failed(DOWN)
    clock.now += 9
    outage.recovered()
    clock.now += 100
    assert outage.failed(DOWN) <= 0.25  # a new outage: first delay, full limit again
    assert math.isclose(outage.down_s, 0)


class DownPipeline:
    async def __aenter__(self) -> DownPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def watch(self, *keys: str) -> None:
        raise DOWN


class DownRedis:
    def pipeline(self, transaction: bool = True) -> DownPipeline:
        return DownPipeline()


async def job(ctx: dict[str, Any]) -> None:
    return None


async def test_a_job_that_could_not_start_gives_its_slot_back() -> None:
    worker = ResilientWorker(
        functions=[job],
        redis_pool=DownRedis(),
        max_jobs=2,
        handle_signals=False,  # type: ignore[arg-type]
    )
    for _ in range(3):  # without giving slots back, the worker would be full after two
        with pytest.raises(RedisConnectionError):
            await worker.start_jobs([b"job_1"])
    assert worker.job_counter == 0
    assert worker.sem._value == 3  # max_jobs + 1, as arq made it
