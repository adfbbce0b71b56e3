"""QuotaGate: a consumer that picks its own jobs (the arq batch runner, the SQS poller) takes none
while no LLM provider may be called, and waits instead (docs/adr/0014).

A job taken while every provider's quota is full would only go back: a claim and a defer in the
store, and (a batch job on arq) a delayed single job that has lost its place in the tenants'
turns. Left where they are, the jobs keep their place and cost nothing. The gate asks the
executor (`JobExecutor.providers_wait_s`: circuits, shared quotas, a 429's pause; nothing taken)
before each take; when no provider may be called it says how long to hold off: until the first
slot frees, plus up to HOLD_JITTER_S so the consumers that waited together do not all come back
in the same instant.

The check cannot say how many slots are free. After a hold, the consumer therefore takes one
job, then two, four… (the consumer lets each such round start, SETTLE_S at most, so its calls
have taken their slots before it asks again), and every slot again once a round reaches its
capacity; a full quota on the way starts again from one. A few jobs may still meet a full quota
(other consumers took the slots meanwhile): they wait the old way, in the store and the queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection

log = logging.getLogger(__name__)

HOLD_JITTER_S = 0.5
SETTLE_S = 1.0  # the most a consumer waits for a limited round before asking again


class QuotaGate:
    def __init__(
        self,
        wait_s: Callable[[], Awaitable[float]],
        capacity: int,
        rng: random.Random | None = None,
    ) -> None:
        self._wait_s, self.capacity = wait_s, max(capacity, 1)
        self._rng = rng or random.Random()
        self._round: int | None = None  # jobs the next take may hold; None: every free slot
        self.holds = 0  # how many times the consumer was held back

    async def hold_s(self) -> float:
        """0 when the consumer may take jobs now; else how long it should take none."""
        try:
            wait = await self._wait_s()
        except Exception:  # fail open, as the quota itself does (shared/adapters/llm/quoted.py)
            log.warning(
                "could not tell whether a provider may be called; taking jobs", exc_info=True
            )
            return 0.0
        if wait <= 0:
            return 0.0
        self._round = 1
        self.holds += 1
        return wait + self._rng.uniform(0, HOLD_JITTER_S)

    @property
    def limited(self) -> bool:
        """After a hold, until a round has reached the capacity: takes are limited, and the
        consumer lets each settle (`settle`) before asking `hold_s` again."""
        return self._round is not None

    def take(self, free: int) -> int:
        """How many of `free` slots to fill now."""
        return free if self._round is None else min(free, self._round)

    def took(self, count: int) -> None:
        """A limited round took `count` jobs: a full one lets the next take twice as many."""
        if self._round is not None and count >= self._round:
            doubled = self._round * 2
            self._round = None if doubled >= self.capacity else doubled

    @staticmethod
    async def settle(tasks: Collection[asyncio.Task[None]]) -> None:
        """Until the round's jobs have ended, SETTLE_S at most (their calls have taken their
        slots by then, or met a full quota)."""
        if tasks:
            await asyncio.wait(tasks, timeout=SETTLE_S)
