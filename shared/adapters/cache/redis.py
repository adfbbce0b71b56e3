"""RedisResultCache: completions as JSON under `chatjobs:cache:<key>`, expired by Redis (SET EX)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.models import Completion

log = logging.getLogger(__name__)

KEY_PREFIX = "chatjobs:cache:"


class RedisResultCache:
    """The client connects on first use, so building one never touches the network."""

    def __init__(self, redis_url: str, *, timeout_s: float = 2.0) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def get(self, key: str) -> Completion | None:
        return _parse(key, await self._redis.get(KEY_PREFIX + key))

    async def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        raws = await self._redis.mget([KEY_PREFIX + key for key in unique])
        hits = {key: _parse(key, raw) for key, raw in zip(unique, raws, strict=True)}
        return {key: value for key, value in hits.items() if value is not None}

    async def set(self, key: str, value: Completion, ttl_s: int) -> None:
        if ttl_s <= 0:  # Redis refuses EX 0; a zero TTL means "do not keep"
            await self.delete(key)
            return
        await self._redis.set(KEY_PREFIX + key, value.model_dump_json(), ex=ttl_s)

    async def delete(self, key: str) -> None:
        await self._redis.delete(KEY_PREFIX + key)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def _parse(key: str, raw: bytes | None) -> Completion | None:
    if raw is None:
        return None
    try:
        return Completion.model_validate_json(raw)
    except ValidationError:  # written by another version: a miss, overwritten on the next success
        log.warning("ignoring unreadable cache entry %s", key)
        return None
