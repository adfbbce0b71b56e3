"""The bare-arq baseline: no-op jobs, one worker, arq's defaults except where the case says.

`python -m bench.bare_arq worker URL POLL_S MAX_JOBS` runs the worker;
`python -m bench.bare_arq latency URL COUNT` enqueues and awaits one job at a time;
`python -m bench.bare_arq drain URL COUNT` enqueues COUNT jobs at once and times until all ran.
Both clients print JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import uvloop
from arq import Worker
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import func

from bench.http import summary

QUEUE = "bench:bare"


async def noop(ctx: dict[str, Any]) -> None:
    return None


def worker(url: str, poll_s: float, max_jobs: int) -> None:
    logging.basicConfig(level=logging.INFO)  # as arq's CLI does: the bench waits for its start line
    Worker(
        functions=[func(noop, name="noop")],  # type: ignore[arg-type]
        redis_settings=RedisSettings.from_dsn(url),
        queue_name=QUEUE,
        poll_delay=poll_s,
        max_jobs=max_jobs,
    ).run()


async def latency(url: str, count: int, warmup: int = 20) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE)
    took = []
    for n in range(warmup + count):
        started = time.perf_counter()
        job = await pool.enqueue_job("noop")
        assert job is not None
        await job.result(timeout=10, poll_delay=0.001)
        if n >= warmup:
            took.append(time.perf_counter() - started)
    await pool.aclose()
    return {"latency": summary(took)}


async def drain(url: str, count: int) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE)
    started = time.perf_counter()
    for start in range(0, count, 1000):
        await asyncio.gather(
            *(pool.enqueue_job("noop") for _ in range(start, min(count, start + 1000)))
        )
    enqueued = time.perf_counter() - started
    await _until_idle(pool)
    elapsed = time.perf_counter() - started
    await pool.aclose()
    return {"jobs": count, "elapsed_s": elapsed, "enqueue_s": enqueued, "per_s": count / elapsed}


async def _until_idle(pool: ArqRedis) -> None:
    """Nothing waiting in the queue and nothing in progress (polled: arq has no event for it)."""
    while await pool.zcard(QUEUE) or await pool.keys(in_progress_key_prefix + "*"):  # noqa: ASYNC110
        await asyncio.sleep(0.002)


def main() -> None:
    command, url, *args = sys.argv[1:]
    if command == "worker":
        worker(url, float(args[0]), int(args[1]))
        return
    work = latency(url, int(args[0])) if command == "latency" else drain(url, int(args[0]))
    print(json.dumps(uvloop.run(work)))


if __name__ == "__main__":
    main()
