"""The WorkerRegistry contract (workers' heartbeats) on memory, Redis (a real Valkey) and DynamoDB
(moto's server): the latest beat of each worker, newest first; old beats forgotten; and the
Heartbeat that beats with its providers' health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.heartbeats.dynamodb import DynamoDbWorkerRegistry
from shared.adapters.heartbeats.memory import MemoryWorkerRegistry
from shared.adapters.heartbeats.redis import RedisWorkerRegistry
from shared.heartbeats import BEAT_KEPT_S, Heartbeat, ProviderHealth, WorkerBeat
from shared.models import utcnow
from shared.ports import WorkerRegistry


def beat(worker: str, seconds_ago: float = 0, **fields: Any) -> WorkerBeat:
    at = utcnow() - timedelta(seconds=seconds_ago)
    return WorkerBeat(
        id=worker, kind="arq", host="h", pid=1, started_at=at, last_beat=at, interval_s=5, **fields
    )


class WorkerRegistryContract:
    @pytest.fixture
    def registry(self) -> WorkerRegistry:
        raise NotImplementedError

    async def test_the_latest_beat_of_each_worker_newest_first(
        self, registry: WorkerRegistry
    ) -> None:
        await registry.beat(beat("w1", 10))
        await registry.beat(beat("w2", 5))
        health = [ProviderHealth(name="gemini", circuit="open", recent_errors=3)]
        await registry.beat(beat("w1", 1, providers=health))
        beats = await registry.beats()
        assert [b.id for b in beats] == ["w1", "w2"]
        assert beats[0].providers == health

    async def test_old_beats_are_forgotten(self, registry: WorkerRegistry) -> None:
        await registry.beat(beat("gone", BEAT_KEPT_S + 60))
        await registry.beat(beat("here"))
        assert [b.id for b in await registry.beats()] == ["here"]

    async def test_a_heartbeat_beats_with_its_providers_health(
        self, registry: WorkerRegistry
    ) -> None:
        health = [ProviderHealth(name="offline", circuit="none")]
        heartbeat = Heartbeat(registry, "embedded", 0.05, lambda: health)
        stop = asyncio.Event()
        task = asyncio.create_task(heartbeat.run_forever(stop))
        try:
            first = await self.until_beat(registry)
            later = await self.until_beat(registry, after=first)
        finally:
            stop.set()
            await task
        assert later.id == first.id and later.kind == "embedded" and later.providers == health
        assert later.alive_at(utcnow()) and not later.alive_at(utcnow() + timedelta(seconds=1))

    @staticmethod
    async def until_beat(registry: WorkerRegistry, after: WorkerBeat | None = None) -> WorkerBeat:
        for _ in range(200):
            beats = await registry.beats()
            if beats and (after is None or beats[0].last_beat > after.last_beat):
                return beats[0]
            await asyncio.sleep(0.02)
        raise AssertionError("no heartbeat arrived")


class TestMemoryWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    def registry(self) -> WorkerRegistry:
        return MemoryWorkerRegistry()


@pytest.mark.integration
class TestRedisWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    async def registry(self, redis_url: str, redis_db: Any) -> AsyncIterator[WorkerRegistry]:
        registry = RedisWorkerRegistry(redis_url)
        yield registry
        await registry.close()


@pytest.mark.integration
class TestDynamoDbWorkerRegistry(WorkerRegistryContract):
    @pytest.fixture
    def registry(self, aws_clients: AwsClients, aws_layout: AwsLayout) -> WorkerRegistry:
        return DynamoDbWorkerRegistry(aws_clients, aws_layout.table)
