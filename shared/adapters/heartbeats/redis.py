"""RedisWorkerRegistry: heartbeats in one Redis hash, `chatjobs:workers` (worker id → beat JSON),
shared by the API and every arq worker. A read drops the beats older than BEAT_KEPT_S."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import cast

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.heartbeats import BEAT_KEPT_S, WorkerBeat
from shared.models import utcnow

log = logging.getLogger(__name__)

KEY = "chatjobs:workers"


class RedisWorkerRegistry:
    """Connects on first use."""

    def __init__(self, redis_url: str, *, timeout_s: float = 2.0) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def beat(self, beat: WorkerBeat) -> None:
        try:
            await cast(Awaitable[int], self._redis.hset(KEY, beat.id, beat.model_dump_json()))
        except RedisError as exc:
            log.warning("heartbeat not recorded: %s", exc)

    async def beats(self) -> list[WorkerBeat]:
        since = utcnow() - timedelta(seconds=BEAT_KEPT_S)
        kept: list[WorkerBeat] = []
        stale: list[str] = []
        held = await cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(KEY))
        for worker, raw in held.items():
            try:
                beat = WorkerBeat.model_validate_json(raw)
            except ValidationError:
                stale.append(worker.decode())
                continue
            if beat.last_beat >= since:
                kept.append(beat)
            else:
                stale.append(worker.decode())
        if stale:
            await cast(Awaitable[int], self._redis.hdel(KEY, *stale))
        return sorted(kept, key=lambda b: b.last_beat, reverse=True)

    async def close(self) -> None:
        await self._redis.aclose()
