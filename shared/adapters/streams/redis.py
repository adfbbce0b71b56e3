"""RedisJobStreams: a Redis Stream per job (`chatjobs:stream:<job id>`). The worker running the
job appends with XADD (trimmed to about MAX_EVENTS, the key expiring KEEP_S after the last event,
ENDED_KEEP_S once the job has ended); API processes follow with XREAD BLOCK from the last id they
passed on, so a reconnecting client resumes where it left off. Ids are Redis's own."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT

from shared.adapters.streams import ENDED_KEEP_S, KEEP_S, MAX_EVENTS
from shared.job_stream import StreamEvent

if TYPE_CHECKING:
    from shared.ports import JobStreams

log = logging.getLogger(__name__)

PREFIX = "chatjobs:stream:"
MAX_WAIT_S = 5.0  # a read blocks at most this long (and the socket waits that much longer)
BATCH = 500  # events a read returns at most
QUIET_S = 1.0  # after a failed append, drop events this long rather than wait on each


class RedisJobStreams:
    """Connects on first use: building one never touches the network."""

    def __init__(
        self,
        redis_url: str,
        *,
        timeout_s: float = 2.0,
        max_events: int = MAX_EVENTS,
        keep_s: int = KEEP_S,
        ended_keep_s: int = ENDED_KEEP_S,
    ) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url,
            socket_timeout=timeout_s + MAX_WAIT_S,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        self.max_events, self.keep_s, self.ended_keep_s = max_events, keep_s, ended_keep_s
        self._quiet_until = 0.0

    async def publish(self, job_id: str, event: StreamEvent) -> None:
        if time.monotonic() < self._quiet_until:
            return
        key = PREFIX + job_id
        fields: dict[EncodableT, EncodableT] = {k: v for k, v in event.fields().items()}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(key, fields, maxlen=self.max_events, approximate=True)
                pipe.expire(key, self.ended_keep_s if event.ends else self.keep_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # followers see the gap and read the job instead
            log.debug("could not append to job %s's stream: %r", job_id, exc)
            self._quiet_until = time.monotonic() + QUIET_S

    async def read(self, job_id: str, after: str, wait_s: float) -> list[tuple[str, StreamEvent]]:
        wait_s = min(wait_s, MAX_WAIT_S)
        block = max(int(wait_s * 1000), 1) if wait_s > 0 else None
        try:
            answer = await self._redis.xread({PREFIX + job_id: after}, count=BATCH, block=block)
        except (RedisError, OSError) as exc:
            log.debug("could not read job %s's stream: %r", job_id, exc)
            await asyncio.sleep(wait_s)
            return []
        entries = answer[0][1] if answer else []
        return [(entry_id, StreamEvent.of_fields(fields)) for entry_id, fields in entries]

    async def close(self) -> None:
        await self._redis.aclose()


if TYPE_CHECKING:
    _satisfies_port: JobStreams = RedisJobStreams("redis://localhost")
