"""One ProviderQuota contract, run against the memory, Redis (a real Valkey) and DynamoDB (moto
over HTTP) adapters. Memory and DynamoDB run on a hand-driven clock with the real one-minute
window; Redis times slots by its own server clock, so it runs on a one-second window and sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.exceptions import RedisError

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.quota.dynamodb import BUCKETS, DynamoDbProviderQuota
from shared.adapters.quota.memory import MemoryProviderQuota
from shared.adapters.quota.redis import RedisProviderQuota
from shared.ports import ProviderQuota
from shared.quotas import QUOTA_WINDOW_S, QuotaLimits

Make = Callable[[dict[str, QuotaLimits]], ProviderQuota]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ProviderQuotaContract:
    window_s = QUOTA_WINDOW_S
    slack_s = 0.0  # how much later than an exact moving window a slot may come back

    @pytest.fixture
    def make(self) -> Make:
        raise NotImplementedError

    async def let_time_pass(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def test_a_provider_without_limits_is_never_held(self, make: Make) -> None:
        quota = make({})
        assert [await quota.acquire("gemini") for _ in range(50)] == [0.0] * 50
        await quota.spend_tokens("gemini", 10**9)
        assert await quota.acquire("gemini") == 0.0

    async def test_calls_per_window_then_a_wait_until_the_oldest_slot_frees(
        self, make: Make
    ) -> None:
        quota = make({"gemini": QuotaLimits(rpm=3)})
        assert [await quota.acquire("gemini") for _ in range(3)] == [0.0] * 3
        wait = await quota.acquire("gemini")
        assert 0 < wait <= self.window_s + self.slack_s
        assert 0 < await quota.wait_s("gemini") <= wait
        await self.let_time_pass(wait)
        assert await quota.acquire("gemini") == 0.0

    async def test_asking_takes_nothing(self, make: Make) -> None:
        quota = make({"gemini": QuotaLimits(rpm=2)})
        assert [await quota.wait_s("gemini") for _ in range(5)] == [0.0] * 5
        assert [await quota.acquire("gemini") for _ in range(2)] == [0.0, 0.0]
        refused = [await quota.acquire("gemini") for _ in range(3)]
        assert all(wait > 0 for wait in refused)  # and a refusal took no slot either:
        await self.let_time_pass(max(refused))
        assert [await quota.acquire("gemini") for _ in range(2)] == [0.0, 0.0]

    async def test_tokens_per_window_count_after_the_call(self, make: Make) -> None:
        quota = make({"gemini": QuotaLimits(tpm=100)})
        assert await quota.acquire("gemini") == 0.0
        await quota.spend_tokens("gemini", 60)
        assert await quota.acquire("gemini") == 0.0  # 60 of 100 spent: room for a call
        await quota.spend_tokens("gemini", 50)
        wait = await quota.acquire("gemini")  # 110 spent: none until the 60 leave the window
        assert 0 < wait <= self.window_s + self.slack_s
        await self.let_time_pass(wait)
        assert await quota.acquire("gemini") == 0.0

    async def test_calls_and_tokens_together(self, make: Make) -> None:
        quota = make({"gemini": QuotaLimits(rpm=5, tpm=10)})
        assert await quota.acquire("gemini") == 0.0
        await quota.spend_tokens("gemini", 10)
        assert await quota.acquire("gemini") > 0

    async def test_a_pause_holds_the_provider_for_everyone_until_it_ends(self, make: Make) -> None:
        limits = {"openrouter": QuotaLimits(rpm=100)}
        quota, other = make(limits), make(limits)
        pause = self.window_s / 2
        await quota.pause("gemini", pause)
        wait = await other.acquire("gemini")  # another worker sees it
        assert 0 < wait <= pause
        assert 0 < await other.wait_s("gemini") <= pause
        await quota.pause("gemini", pause / 10)  # a shorter pause does not cut it short
        assert await quota.acquire("gemini") > pause / 10
        assert await other.acquire("openrouter") == 0.0  # only that provider is paused
        await self.let_time_pass(wait)
        assert await quota.acquire("gemini") == 0.0

    async def test_providers_are_counted_apart(self, make: Make) -> None:
        quota = make({"gemini": QuotaLimits(rpm=1), "openrouter": QuotaLimits(rpm=1)})
        assert await quota.acquire("gemini") == 0.0
        assert await quota.acquire("openrouter") == 0.0
        assert await quota.acquire("gemini") > 0
        assert await quota.acquire("openrouter") > 0

    async def test_workers_asking_at_once_never_pass_the_limit(self, make: Make) -> None:
        limits = {"gemini": QuotaLimits(rpm=10)}
        workers = [make(limits) for _ in range(3)]
        waits = await asyncio.gather(*(workers[n % 3].acquire("gemini") for n in range(30)))
        assert sum(wait == 0.0 for wait in waits) == 10


class TestMemoryProviderQuota(ProviderQuotaContract):
    @pytest.fixture
    def make(self) -> Make:
        clock = FakeClock(1000.0)
        self.clock = clock
        made: dict[tuple[tuple[str, QuotaLimits], ...], ProviderQuota] = {}

        def make(limits: dict[str, QuotaLimits]) -> ProviderQuota:
            # one process: every "worker" asking with the same limits shares the same memory
            key = tuple(sorted(limits.items()))
            return made.setdefault(key, MemoryProviderQuota(limits, clock=clock))

        return make

    async def let_time_pass(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.mark.integration
class TestRedisProviderQuota(ProviderQuotaContract):
    window_s = 1.0

    @pytest.fixture
    async def make(self, redis_url: str, redis_db: Any) -> AsyncIterator[Make]:
        made: list[RedisProviderQuota] = []

        def make(limits: dict[str, QuotaLimits]) -> ProviderQuota:
            made.append(RedisProviderQuota(redis_url, limits, window_s=self.window_s))
            return made[-1]

        yield make
        for quota in made:
            await quota.close()

    async def let_time_pass(self, seconds: float) -> None:
        await asyncio.sleep(seconds + 0.01)

    async def test_keys_expire_with_their_window(self, make: Make, redis_db: Any) -> None:
        quota = make({"gemini": QuotaLimits(rpm=5, tpm=100)})
        await quota.acquire("gemini")
        await quota.spend_tokens("gemini", 7)
        await quota.pause("gemini", 0.5)
        keys = sorted(k.decode() for k in await redis_db.keys("chatjobs:quota:*"))
        assert keys == [
            f"chatjobs:quota:{{gemini}}:{part}" for part in ("calls", "paused", "tokens")
        ]
        for key in keys:
            assert 0 < await redis_db.pttl(key) <= 1000

    async def test_an_unreachable_redis_raises(self) -> None:
        quota = RedisProviderQuota("redis://127.0.0.1:1/0", {}, timeout_s=0.5)
        with pytest.raises((RedisError, OSError)):
            await quota.acquire("gemini")
        await quota.close()


@pytest.mark.integration
class TestDynamoDbProviderQuota(ProviderQuotaContract):
    slack_s = QUOTA_WINDOW_S / BUCKETS  # a bucket is freed whole

    @pytest.fixture
    def make(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> Make:
        self.clock = FakeClock(time.time())

        def make(limits: dict[str, QuotaLimits]) -> ProviderQuota:
            return DynamoDbProviderQuota(aws_clients, aws_layout.table, limits, clock=self.clock)

        return make

    async def let_time_pass(self, seconds: float) -> None:
        self.clock.now += seconds

    async def test_no_sliding_window_holds_more_than_the_limit(self, make: Make) -> None:
        """Calls asked for every 2 s over three windows: wherever a window starts, it holds
        at most the limit."""
        quota = make({"gemini": QuotaLimits(rpm=7)})
        taken = []
        for _ in range(95):
            if await quota.acquire("gemini") == 0.0:
                taken.append(self.clock.now)
            self.clock.now += 2.0
        most = max(sum(1 for t in taken if start <= t < start + 60) for start in taken)
        assert most == 7
        assert len(taken) >= 7 * 2  # and the quota keeps being given out window after window

    async def test_counter_items_expire(self, make: Make, aws_clients: AwsClients,
                                        aws_layout: AwsLayout) -> None:  # fmt: skip
        quota = make({"gemini": QuotaLimits(rpm=5)})
        await quota.acquire("gemini")
        ddb = await aws_clients.client("dynamodb")
        items = (await ddb.scan(TableName=aws_layout.table))["Items"]
        quota_items = [i for i in items if i["pk"]["S"] == "QUOTA#gemini"]
        assert len(quota_items) == 1
        expires = int(quota_items[0]["expires_at"]["N"])
        assert self.clock.now + QUOTA_WINDOW_S < expires < self.clock.now + 3 * QUOTA_WINDOW_S
