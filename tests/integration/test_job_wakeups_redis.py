"""RedisJobWakeups over a real Redis: a job's end wakes the waiters of another process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from shared.adapters.wakeups.redis import RedisJobWakeups

pytestmark = pytest.mark.integration


async def test_a_notification_wakes_a_waiter_through_redis(redis_url: str, redis_db: Any) -> None:
    api, worker = RedisJobWakeups(redis_url), RedisJobWakeups(redis_url)  # two processes' worth
    try:
        with api.watch("job_a") as finished, api.watch("job_b") as other:
            for _ in range(50):  # until the API's subscription is in place
                if await redis_db.pubsub_numsub("chatjobs:finished") != [(b"chatjobs:finished", 0)]:
                    break
                await asyncio.sleep(0.02)
            await worker.notify(["job_a"])
            await asyncio.wait_for(finished.wait(), timeout=5)
            assert not other.is_set()
    finally:
        await api.close()
        await worker.close()


async def test_notifying_with_nobody_subscribed_is_harmless(redis_url: str) -> None:
    worker = RedisJobWakeups(redis_url)
    try:
        await worker.notify(["job_a"])
        await worker.notify(["job_b"])  # quiet: nobody listened to the first
    finally:
        await worker.close()


async def test_an_unreachable_redis_never_fails_a_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wakeups = RedisJobWakeups("redis://127.0.0.1:1/0", timeout_s=0.2)
    caplog.set_level(logging.DEBUG, logger="shared.adapters.wakeups.redis")
    try:
        await wakeups.notify(["job_a"])  # returns at once: the send runs in the background
        for _ in range(250):  # up to 5 s
            if any("could not publish" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    finally:
        async with asyncio.timeout(5):
            await wakeups.close()  # the failed send ended cleanly: nothing left to raise
    (failure,) = [r for r in caplog.records if "could not publish" in r.getMessage()]
    assert failure.levelno == logging.DEBUG and "1 finished jobs" in failure.getMessage()
