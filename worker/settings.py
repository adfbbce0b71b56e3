"""arq worker configuration. `startup` is the worker process's composition root.

Timing, with T = Settings.job_timeout_s (the executor's own bound on one LLM call):
- the executor gives up on the LLM after T and records a retry or a failure itself;
- `executor.deliver` gives up on the whole run after T + GUARD_MARGIN_S (shared/execution.py) and
  arq delivers it again;
- arq's hard `job_timeout` is T + HARD_MARGIN_S, so arq's own timeout (which would drop the job as
  failed) never fires first; arq's in-progress key lives job_timeout + 10 s = T + 15 s, so a job
  whose worker was SIGKILLed is picked up by another worker after at most T + 15 s (60 s by
  default), by which time its store lease (claim + T + 5 s) has run out and the claim succeeds;
- a worker polls when told there is work (a producer's announcement, one of its own slots coming
  free) and every POLL_DELAY_S otherwise; a poll promotes batch jobs into the slots that due single
  jobs leave free and claims due jobs, in one round trip (worker/polling.py,
  shared/adapters/queue/arq.py);
- on SIGTERM arq stops taking jobs and waits `job_completion_wait` (longer than job_timeout) for
  running ones, so a graceful stop never cancels a job half-way;
- while Redis is unreachable the worker keeps its running jobs and retries with backoff; after
  WORKER_OUTAGE_LIMIT_S of continuous outage it gives up (worker/outage.py, `python -m worker`
  then exits 1).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, cast

from arq import Retry
from arq.connections import RedisSettings
from arq.typing import WorkerCoroutine
from arq.worker import func

from shared.adapters.queue.arq import FUNCTION, QUEUE_NAME, ArqJobQueue
from shared.config import Settings
from shared.factory import ServiceFactory, Services
from shared.logs import bound
from worker.metrics import serve_metrics, stop_metrics
from worker.outage import UNREACHABLE
from worker.polling import WakingWorker, listen_for_work
from worker.recovery import sweep_forever

log = logging.getLogger(__name__)

POLL_DELAY_S = 0.05
MAX_TRIES = 1_000  # the executor bounds attempts (and waits out open circuits without spending
# any); arq must never drop a job on its own
HARD_MARGIN_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30
CLOSE_TIMEOUT_S = 20.0  # for each step of shutdown


async def run_job(ctx: dict[str, Any], job_id: str) -> None:
    """Run one delivery. A delay (a retry, a job still owed, an unexpected error) becomes an arq
    Retry of the same arq job, which arq would otherwise drop as a failed job."""
    services: Services = ctx["services"]
    with bound(job_id=job_id):
        delay = await services.executor.deliver(job_id)
    if delay is not None:
        raise Retry(defer=delay)


async def startup(ctx: dict[str, Any]) -> None:
    """The worker's composition root. Everything it starts is closed by `shutdown`, in reverse
    order, even when starting fails half-way."""
    resources = ctx["resources"] = AsyncExitStack()
    worker: WakingWorker = ctx["worker"]
    queue = ArqJobQueue.from_pool(ctx["redis"])
    if worker.burst:  # drain everything, batches included, then stop
        while await queue.promote(10_000):
            pass
    else:
        worker.take = queue.take
        _background(resources, listen_for_work(ctx["settings"].redis_url, worker), "wake-ups")
    services: Services | None = ctx.get("services_override")
    if services is None:  # the worker's own, with its lost-job sweeper
        services = await ServiceFactory(ctx["settings"], queue=queue).start(
            consume=False, deliver_webhooks=True
        )
        resources.push_async_callback(close_step, "close the services", services.close)
        _background(resources, sweep_forever(services, ctx["redis"]), "lost-jobs")
    ctx["services"] = services
    server = serve_metrics(ctx["settings"], services.registry)
    if server is not None:
        resources.push_async_callback(close_step, "stop the metrics server", stop_metrics, server)
    gc.freeze()  # start-up's objects live as long as the process: out of the collector's scans


async def shutdown(ctx: dict[str, Any]) -> None:
    resources: AsyncExitStack | None = ctx.pop("resources", None)
    if resources is not None:
        await resources.aclose()


def _background(
    resources: AsyncExitStack, work: Coroutine[Any, Any, None], name: str
) -> asyncio.Task[None]:
    task = asyncio.create_task(work, name=name)

    async def cancel() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    resources.push_async_callback(close_step, f"stop {name}", cancel)
    return task


async def close_step(what: str, close: Callable[..., Awaitable[object]], *args: Any) -> None:
    """One step of a shutdown: bounded in time, and a failure is logged, never raised, so the
    steps after it still run."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await close(*args)
    except UNREACHABLE as exc:  # expected while Redis is down: no traceback
        log.warning("shutdown: could not %s: %r", what, exc)
    except Exception:
        log.exception("shutdown: could not %s", what)


def worker_options(settings: Settings) -> dict[str, Any]:
    """arq `Worker` keyword arguments (what arq calls WorkerSettings) for these Settings."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL must be set to run arq workers")
    job_timeout = settings.job_timeout_s + HARD_MARGIN_S
    return {
        "functions": [func(cast(WorkerCoroutine, run_job), name=FUNCTION)],
        "queue_name": QUEUE_NAME,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": job_timeout,
        "max_tries": MAX_TRIES,
        "keep_result": 0,  # results live in the store; no result key also lets a finished job
        # be enqueued again under the same arq id
        "idle_poll_s": POLL_DELAY_S,
        "handle_signals": True,
        "job_completion_wait": math.ceil(job_timeout) + 1,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "outage_limit_s": settings.worker_outage_limit_s,
    }


def build_worker(
    settings: Settings, *, burst: bool = False, services_override: Services | None = None
) -> WakingWorker:
    """The arq worker. `burst=True` drains the queue and returns (tests: no signals, no polling
    delay). `services_override` is used as-is and not closed on shutdown."""
    options = worker_options(settings)
    if burst:
        options.update(idle_poll_s=0, handle_signals=False)
    ctx: dict[str, Any] = {"settings": settings, "services_override": services_override}
    worker = WakingWorker(**options, burst=burst, ctx=ctx)
    ctx["worker"] = worker  # arq keeps this very dict as the jobs' context
    return worker
