"""`python -m worker`: run an arq worker against REDIS_URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from shared.config import Settings
from shared.logs import configure_logging
from worker.settings import build_worker

log = logging.getLogger("worker")


async def serve(settings: Settings) -> None:
    worker = build_worker(settings)
    try:
        with contextlib.suppress(asyncio.CancelledError):  # how arq ends after a signal
            await worker.async_run()
    finally:
        await worker.close()


def main() -> int:
    configure_logging()
    settings = Settings()
    if settings.resolved_queue != "arq" or not settings.redis_url:
        log.error(
            "python -m worker runs arq workers, but the queue resolves to %r: set REDIS_URL "
            "(and leave QUEUE_BACKEND unset or 'arq'); in embedded mode the API runs its workers.",
            settings.resolved_queue,
        )
        return 2
    log.info("arq worker: concurrency %d", settings.worker_concurrency)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
