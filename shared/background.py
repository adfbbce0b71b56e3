"""BackgroundTasks: the one supervisor of a process's loops (webhook delivery, sweeps, purges).

A loop is `loop(stop)`: it runs until `stop` is set. Each is started on the process's
AsyncExitStack, so closing the stack stops them in reverse order: set `stop`, give the loop
GRACE_S to end, then cancel it. A loop that raises is logged and restarted after a pause, so no
error ends a process's maintenance silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack, suppress
from typing import Any

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
GRACE_S = 5.0
RESTART_AFTER_S = 1.0


class BackgroundTasks:
    def __init__(self, stack: AsyncExitStack, grace_s: float = GRACE_S) -> None:
        self.stack, self.grace_s = stack, grace_s

    def start(self, name: str, loop: Loop, stop: asyncio.Event | None = None) -> None:
        """Run `loop(stop)` until the stack closes, or until `stop` (the caller's, if given:
        e.g. a worker's "take no more jobs") is set."""
        stop = stop or asyncio.Event()
        task = asyncio.create_task(_kept_alive(name, loop, stop), name=name)

        async def end() -> None:
            stop.set()
            done, _ = await asyncio.wait([task], timeout=self.grace_s)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.stack.push_async_callback(end)


async def _kept_alive(name: str, loop: Loop, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await loop(stop)
        except Exception:
            log.exception("background loop %r failed; restarting it", name)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_AFTER_S)
