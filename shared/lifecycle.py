"""Starting and closing adapters on an AsyncExitStack: what started is closed, in reverse, and
one failing close is logged without skipping the others."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[None]]


async def entered(stack: AsyncExitStack, what: str, start: Step, close: Step) -> None:
    """Start a part, and have the stack close it."""
    await start()
    closes(stack, what, close)


def closes(stack: AsyncExitStack, what: str, close: Step) -> None:
    """Have the stack close a part (already started, or needing no start)."""
    stack.push_async_callback(_logged, what, close)


async def _logged(what: str, close: Step) -> None:
    """Close one part; a failure is logged, and the stack goes on closing the others."""
    try:
        await close()
    except Exception:
        log.exception("closing the %s failed", what)
