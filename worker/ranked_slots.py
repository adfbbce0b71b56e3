"""RankedSlots: a worker's run slots, handed out lowest rank first (the SQS poller's priorities).

Like a semaphore of `capacity`, except that when a slot comes free it goes to the waiter of the
lowest rank (then the one that came first), so a message from the `high` queue received after a
`low` one still runs before it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class RankedSlots:
    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        self.busy = 0
        self.incoming = 0  # received, not yet asking for a slot (`expect`)
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, waiter in self._waiters if not waiter.done())

    @property
    def room(self) -> int:
        """Slots neither busy nor promised to a waiter: what a poller may still receive."""
        return self.capacity - self.busy - self.waiting - self.incoming

    def expect(self, count: int) -> None:
        """`count` more will ask for a slot soon (messages just received)."""
        self.incoming += count

    @asynccontextmanager
    async def slot(self, rank: int) -> AsyncIterator[None]:
        self.incoming = max(self.incoming - 1, 0)
        if self.busy < self.capacity and not self.waiting:
            self.busy += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (rank, next(self._order), waiter))
            try:
                await waiter  # the slot is ours once it is set: `_hand_over` counted it busy
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    async def until_room(self) -> None:
        while self.room < 1:
            self._changed.clear()
            await self._changed.wait()

    def _release(self) -> None:
        self.busy -= 1
        while self._waiters and self.busy < self.capacity:
            *_, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                self.busy += 1
                waiter.set_result(None)
        self._changed.set()
