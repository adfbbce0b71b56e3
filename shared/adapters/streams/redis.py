"""RedisJobStreams: a Redis Stream per job (`chatjobs:stream:<job id>`). The worker running the
job appends with XADD (trimmed to about MAX_EVENTS, the key expiring KEEP_S after the last event,
ENDED_KEEP_S once the job has ended); API processes follow with XREAD BLOCK from the last id they
passed on, so a reconnecting client resumes where it left off. Ids are Redis's own.

Appends go out in the background, in order, those waiting at the same moment in one pipelined
round trip: a job's run never waits on Redis for a piece of its answer. While Redis cannot be
reached, events are dropped (for QUIET_S after each failure): followers see the gap and read the
job record instead."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from contextlib import suppress
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
BATCH = 500  # events a read returns, or a pipeline appends, at most
MAX_PENDING = 50_000  # events waiting to be sent; beyond, new ones are dropped
QUIET_S = 1.0  # after a failed append, drop events this long rather than queue them


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
        self._outbox: deque[tuple[str, StreamEvent]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._quiet_until = 0.0

    async def publish(self, job_id: str, event: StreamEvent) -> None:
        if time.monotonic() < self._quiet_until or len(self._outbox) >= MAX_PENDING:
            return
        self._outbox.append((job_id, event))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="job-streams-sender")

    async def _send(self) -> None:
        while self._outbox:
            batch = [self._outbox.popleft() for _ in range(min(BATCH, len(self._outbox)))]
            try:
                await self._append(batch)
            except (RedisError, OSError) as exc:  # followers see the gap and read the job
                log.debug("could not append %d job stream events: %r", len(batch), exc)
                self._quiet_until = time.monotonic() + QUIET_S
                self._outbox.clear()

    async def _append(self, batch: list[tuple[str, StreamEvent]]) -> None:
        expiry: dict[str, int] = {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, event in batch:
                fields: dict[EncodableT, EncodableT] = {k: v for k, v in event.fields().items()}
                pipe.xadd(PREFIX + job_id, fields, maxlen=self.max_events, approximate=True)
                expiry[PREFIX + job_id] = self.ended_keep_s if event.ends else self.keep_s
            for key, seconds in expiry.items():
                pipe.expire(key, seconds)
            await pipe.execute()

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
        sender, self._sender = self._sender, None
        if sender is not None:  # what was published still goes out
            await asyncio.wait([sender], timeout=2.0)
            if not sender.done():
                sender.cancel()
                with suppress(asyncio.CancelledError):
                    await sender
        await self._redis.aclose()


if TYPE_CHECKING:
    _satisfies_port: JobStreams = RedisJobStreams("redis://localhost")
