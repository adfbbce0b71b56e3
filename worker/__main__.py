"""`python -m worker`: run an arq worker against REDIS_URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
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
    if settings.resolved_queue == "sqs":
        return poll_sqs(settings)
    if settings.resolved_queue != "arq" or not settings.redis_url:
        log.error(
            "python -m worker runs arq workers (REDIS_URL) or polls SQS (QUEUE_BACKEND=sqs), but "
            "the queue resolves to %r; in embedded mode the API runs its workers.",
            settings.resolved_queue,
        )
        return 2
    log.info("arq worker: concurrency %d", settings.worker_concurrency)
    asyncio.run(serve(settings))
    return 0


def poll_sqs(settings: Settings) -> int:
    """Long-poll SQS until SIGTERM or SIGINT; running jobs finish first."""
    from worker.sqs_poller import serve as serve_sqs

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_sqs(settings, stop)

    log.info("SQS worker: concurrency %d per queue", settings.worker_concurrency)
    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
