"""BackgroundTasks: a loop runs until its stack closes (or the caller's stop is set), a loop that
raises is restarted, and one that ignores its stop is cancelled after the grace."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from shared import background
from shared.background import BackgroundTasks


async def test_a_loop_runs_until_the_stack_closes() -> None:
    seen: list[str] = []

    async def loop(stop: asyncio.Event) -> None:
        seen.append("started")
        await stop.wait()
        seen.append("stopped")

    async with AsyncExitStack() as stack:
        BackgroundTasks(stack).start("loop", loop)
        await asyncio.sleep(0.01)
        assert seen == ["started"]
    assert seen == ["started", "stopped"]


async def test_a_failing_loop_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(background, "RESTART_AFTER_S", 0.01)
    runs = 0
    third_run = asyncio.Event()

    async def loop(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        third_run.set()
        await stop.wait()

    async with AsyncExitStack() as stack:
        BackgroundTasks(stack).start("flaky", loop)
        await asyncio.wait_for(third_run.wait(), 5)
    assert runs == 3


async def test_the_callers_stop_ends_the_loop_for_good() -> None:
    """A worker's "take no more jobs" event: once set, the loop returns and is not run again,
    though the stack is still open."""
    caller_stop = asyncio.Event()
    runs = 0

    async def loop(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        await stop.wait()

    async with AsyncExitStack() as stack:
        BackgroundTasks(stack).start("batch jobs", loop, caller_stop)
        await asyncio.sleep(0.01)
        caller_stop.set()
        await asyncio.sleep(0.05)
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "batch jobs"]
        assert all(task.done() for task in tasks)
    assert runs == 1


async def test_a_loop_that_ignores_its_stop_is_cancelled_after_the_grace() -> None:
    cancelled = False

    async def stubborn(stop: asyncio.Event) -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled = True
            raise

    async with AsyncExitStack() as stack:
        BackgroundTasks(stack, grace_s=0.05).start("stubborn", stubborn)
        await asyncio.sleep(0.01)
    assert cancelled
