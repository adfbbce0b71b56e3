"""One ResultCache contract, run against the fake and every adapter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.cache.dynamodb import DynamoDbResultCache
from shared.adapters.cache.memory import MemoryResultCache
from shared.adapters.cache.redis import KEY_PREFIX, RedisResultCache
from shared.models import Completion, Usage
from shared.ports import ResultCache
from tests.fakes import FakeResultCache


def completion(content: str = "hello") -> Completion:
    return Completion(
        content=content,
        provider="fake",
        model="fake-model",
        usage=Usage(input_tokens=3, output_tokens=5),
        latency_ms=12,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ResultCacheContract:
    honours_ttl = True

    @pytest.fixture
    async def cache(self) -> AsyncIterator[ResultCache]:
        raise NotImplementedError
        yield

    async def let_time_pass(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def test_set_then_get_round_trips(self, cache: ResultCache) -> None:
        await cache.set("k", completion(), ttl_s=60)
        assert await cache.get("k") == completion()

    async def test_miss_is_none(self, cache: ResultCache) -> None:
        assert await cache.get("never-set") is None

    async def test_set_overwrites(self, cache: ResultCache) -> None:
        await cache.set("k", completion("first"), ttl_s=60)
        await cache.set("k", completion("second"), ttl_s=60)
        assert await cache.get("k") == completion("second")

    async def test_get_many_returns_only_hits(self, cache: ResultCache) -> None:
        await cache.set("a", completion("A"), ttl_s=60)
        await cache.set("b", completion("B"), ttl_s=60)
        hits = await cache.get_many(["a", "missing", "b", "a"])
        assert hits == {"a": completion("A"), "b": completion("B")}
        assert await cache.get_many([]) == {}

    async def test_entries_expire_after_their_ttl(self, cache: ResultCache) -> None:
        if not self.honours_ttl:
            pytest.skip("this cache keeps entries for ever")
        await cache.set("short", completion(), ttl_s=1)
        await cache.set("long", completion("long"), ttl_s=60)
        await self.let_time_pass(1.1)
        assert await cache.get("short") is None
        assert await cache.get_many(["short", "long"]) == {"long": completion("long")}

    async def test_delete_forgets_one_entry(self, cache: ResultCache) -> None:
        await cache.set("gone", completion("gone"), ttl_s=60)
        await cache.set("kept", completion("kept"), ttl_s=60)
        await cache.delete("gone")
        await cache.delete("never-set")  # no error
        assert await cache.get("gone") is None
        assert await cache.get_many(["gone", "kept"]) == {"kept": completion("kept")}

    async def test_ping_answers(self, cache: ResultCache) -> None:
        assert await cache.ping() is True


class TestFakeResultCache(ResultCacheContract):
    honours_ttl = False

    @pytest.fixture
    async def cache(self) -> AsyncIterator[ResultCache]:
        yield FakeResultCache()


class TestMemoryResultCache(ResultCacheContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    async def cache(self, clock: FakeClock) -> AsyncIterator[ResultCache]:
        self.fake_clock = clock
        cache = MemoryResultCache(max_entries=100, clock=clock)
        yield cache
        await cache.close()

    async def let_time_pass(self, seconds: float) -> None:
        self.fake_clock.now += seconds

    async def test_evicts_the_least_recently_used_beyond_max_entries(self) -> None:
        cache = MemoryResultCache(max_entries=2, clock=FakeClock())
        await cache.set("a", completion("A"), ttl_s=60)
        await cache.set("b", completion("B"), ttl_s=60)
        assert await cache.get("a") is not None  # "a" is now the most recently used
        await cache.set("c", completion("C"), ttl_s=60)
        assert len(cache) == 2
        assert await cache.get("b") is None
        assert await cache.get("a") == completion("A")
        assert await cache.get("c") == completion("C")

    async def test_a_caller_cannot_change_a_cached_entry(self) -> None:
        cache = MemoryResultCache()
        await cache.set("k", completion("kept"), ttl_s=60)
        got = await cache.get("k")
        assert got is not None
        got.content = "changed"
        assert await cache.get("k") == completion("kept")

    async def test_zero_ttl_keeps_nothing(self) -> None:
        cache = MemoryResultCache()
        await cache.set("k", completion(), ttl_s=0)
        assert await cache.get("k") is None


@pytest.mark.integration
class TestRedisResultCache(ResultCacheContract):
    @pytest.fixture
    async def cache(self, redis_url: str, redis_db: Any) -> AsyncIterator[ResultCache]:
        cache = RedisResultCache(redis_url)
        yield cache
        await cache.close()

    async def test_stores_completion_json_under_the_prefix_with_a_ttl(
        self, cache: ResultCache, redis_db: Any
    ) -> None:
        await cache.set("k", completion(), ttl_s=300)
        raw = await redis_db.get(KEY_PREFIX + "k")
        assert Completion.model_validate_json(raw) == completion()
        assert 0 < await redis_db.ttl(KEY_PREFIX + "k") <= 300

    async def test_an_unreadable_entry_is_a_miss(self, cache: ResultCache, redis_db: Any) -> None:
        await redis_db.set(KEY_PREFIX + "k", b"not json")
        assert await cache.get("k") is None
        assert await cache.get_many(["k"]) == {}

    async def test_zero_ttl_keeps_nothing(self, cache: ResultCache) -> None:
        await cache.set("k", completion(), ttl_s=0)
        assert await cache.get("k") is None

    async def test_ping_is_false_when_redis_is_unreachable(self) -> None:
        cache = RedisResultCache("redis://127.0.0.1:1/0", timeout_s=0.5)
        assert await cache.ping() is False
        await cache.close()


@pytest.mark.integration
class TestDynamoDbResultCache(ResultCacheContract):
    @pytest.fixture
    async def cache(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> AsyncIterator[ResultCache]:
        self.fake_clock = FakeClock()
        self.fake_clock.now = time.time()
        cache = DynamoDbResultCache(
            aws_clients, aws_layout.table, timeout_s=10, clock=self.fake_clock
        )
        yield cache
        await cache.close()

    async def let_time_pass(self, seconds: float) -> None:
        self.fake_clock.now += seconds

    async def test_zero_ttl_keeps_nothing(self, cache: ResultCache) -> None:
        await cache.set("k", completion(), ttl_s=60)
        await cache.set("k", completion(), ttl_s=0)
        assert await cache.get("k") is None

    async def test_ping_is_false_when_the_table_is_missing(self, aws_clients: AwsClients) -> None:
        cache = DynamoDbResultCache(aws_clients, "no-such-table")
        assert await cache.ping() is False
