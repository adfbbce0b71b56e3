"""RedisJobWakeups: job-finished wake-ups between processes, over one Redis pub/sub channel.

The worker that ends a job publishes its id; every API process subscribes (on its first
long-poll) and wakes its own waiters. Ids finishing at the same moment go out in one PUBLISH
(space-separated), so a busy worker does not pay a round trip per job, and while no process
listens at all (PUBLISH reached nobody) a worker stays quiet for QUIET_S. Pub/sub keeps nothing
for a subscriber that is reconnecting: waiters re-read the store now and then anyway (JobWakeups).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.adapters.wakeups.local import LocalJobWakeups

if TYPE_CHECKING:
    from shared.ports import JobWakeups

log = logging.getLogger(__name__)

CHANNEL = "chatjobs:finished"
RETRY_S = 1.0
QUIET_S = 1.0  # no subscriber: not worth a round trip per job (waiters re-read the store anyway)


class RedisJobWakeups:
    """Connects on first use: building one never touches the network."""

    def __init__(self, redis_url: str, *, timeout_s: float = 2.0) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._url = redis_url
        self._local = LocalJobWakeups()
        self._outbox: list[str] = []
        self._sender: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._quiet_until = 0.0

    @contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="job-wakeups-listener")
        with self._local.watch(job_id) as event:
            yield event

    async def notify(self, job_ids: Sequence[str]) -> None:
        if time.monotonic() < self._quiet_until:
            return
        self._outbox.extend(job_ids)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="job-wakeups-sender")

    async def _send(self) -> None:
        while self._outbox:
            ids, self._outbox = self._outbox, []
            try:
                listeners = await self._redis.publish(CHANNEL, " ".join(ids))
            except (RedisError, OSError) as exc:  # waiters will find out by reading the store
                log.debug("could not publish %d finished jobs: %r", len(ids), exc)
                continue
            if not listeners:
                self._quiet_until = time.monotonic() + QUIET_S

    async def _listen(self) -> None:
        """Subscribe and wake local waiters, for as long as this process runs."""
        while True:
            client = Redis.from_url(self._url, socket_connect_timeout=2.0)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        self._local.wake(message["data"].decode().split())
            except (RedisError, OSError) as exc:
                log.debug("job wake-ups: subscription lost (%r); resubscribing", exc)
            finally:
                await client.aclose()
            await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        if self._sender is not None:  # what has finished is still announced
            await asyncio.wait([self._sender], timeout=2.0)
        for task in (self._listener, self._sender):
            if task is not None and not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._listener = self._sender = None
        await self._redis.aclose()


if TYPE_CHECKING:
    _satisfies_port: JobWakeups = RedisJobWakeups("redis://localhost")
