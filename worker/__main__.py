"""`python -m worker`: run an arq worker against REDIS_URL.

Exit status: 0 after a signal (SIGTERM, SIGINT) stopped it, 1 when it failed: Redis unreachable for
WORKER_OUTAGE_LIMIT_S, or an error while starting. Either way its services are closed first
(worker/supervisor.py), and the process does exit, so a process manager (Compose's `restart:`,
systemd, Kubernetes) can start it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from shared.config import Settings
from shared.logs import configure_logging
from worker.outage import RedisGaveUp
from worker.supervisor import Supervisor

log = logging.getLogger("worker")

THREAD_JOIN_S = 2.0


async def serve(settings: Settings) -> int:
    try:
        await Supervisor(settings).run()
    except RedisGaveUp as exc:
        log.error("%s: exiting with status 1", exc)
        return 1
    except Exception:
        log.exception("the worker failed: exiting with status 1")
        return 1
    return 0


def _leave_despite_lingering_threads(code: int) -> None:
    """A thread that is not a daemon (an unclosed aiosqlite connection's, say) would keep the
    interpreter alive after `main` returns: a worker that hangs instead of exiting is never
    restarted. Leave anyway, and say so."""
    current = threading.current_thread()
    lingering = [t for t in threading.enumerate() if t is not current and not t.daemon]
    for thread in lingering:
        thread.join(THREAD_JOIN_S / len(lingering))
    names = [t.name for t in lingering if t.is_alive()]
    if names:
        log.error("threads still running after shutdown: %s; exiting anyway", names)
        logging.shutdown()
        os._exit(code or 1)


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (as uvicorn runs the API): a fraction of asyncio's
    own loop overhead on every Redis round trip."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_format)
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
    code = run(serve(settings))
    _leave_despite_lingering_threads(code)
    return code


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
