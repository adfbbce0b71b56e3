"""arq worker configuration: the job function and the `Worker` keyword arguments (what arq calls
WorkerSettings), all of them parameters arq documents.

Timing, with T = Settings.job_timeout_s (the executor's own bound on one LLM call):
- the executor gives up on the LLM after T and records a retry or a failure itself;
- `executor.deliver` gives up on the whole run after T + GUARD_MARGIN_S (shared/execution.py) and
  asks for it to be delivered again;
- arq's hard `job_timeout` is T + HARD_MARGIN_S, so arq's own timeout (which would drop the job as
  failed) never fires first. That is also the redelivery horizon: no delivery, by arq or by the
  batch runner, lasts longer, so a job unchanged for longer than that is not being run
  (`redelivery_horizon_s` in shared/adapters/queue/arq.py, used by the lost-job sweep). arq
  takes a job whose worker was
  SIGKILLed again once its in-progress marker expires, about 10 s after `job_timeout` (60 s by
  default; tests/e2e/test_redis_workers.py measures it), by which time its store lease (claim +
  T + 5 s) has run out and the claim succeeds;
- an idle worker asks Redis for due jobs every ARQ_POLL_DELAY_S (arq's `poll_delay`);
- on SIGTERM the worker stops taking jobs and waits `completion_wait_s` (longer than
  job_timeout) for running ones, so a graceful stop never cancels a job half-way
  (worker/supervisor.py).
"""

from __future__ import annotations

import math
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from arq.worker import func

from shared.adapters.queue.arq import (
    FUNCTION,
    QUEUE_NAME,
    ArqJobQueue,
    arq_job_timeout_s,
)

__all__ = ["arq_job_timeout_s", "completion_wait_s", "worker_options"]
from shared.config import Settings
from shared.errors import QueueUnavailable
from shared.factory import Services
from shared.keys import DEFAULT_PRIORITY
from shared.lanes import Lane, delivering, priority_or_default
from shared.logs import bound
from worker.slots import Slots

POLL_DELAY_S = Settings.model_fields["arq_poll_delay_s"].default
MAX_TRIES = 1_000  # the executor bounds attempts (and waits out open circuits without spending
# any); arq must never drop a job on its own
HEALTH_CHECK_INTERVAL_S = 30
HEALTH_CHECK_KEY = QUEUE_NAME + ":health-check"  # arq's default for this queue, for `arq --check`


async def run_job(
    ctx: dict[str, Any], job_id: str, priority: str = DEFAULT_PRIORITY, tenant: str = ""
) -> None:
    """Run one delivery (`priority` and `tenant`: its lane; arq jobs enqueued before issue 16
    have neither). A delay (a retry, a job still owed, an unexpected error) waits in the queue's
    delayed set, to come back at its priority (ArqJobQueue.release_due); when that cannot be
    written, it becomes an arq Retry of the same arq job, which arq would otherwise drop as a
    failed job."""
    services: Services = ctx["services"]
    slots: Slots = ctx["slots"]
    lane = Lane(priority_or_default(priority), tenant)
    with bound(job_id=job_id), slots.arq_job(ctx["job_id"]), delivering(lane):
        delay = await services.executor.deliver(job_id)
    if delay is None:
        return
    queue: ArqJobQueue | None = ctx.get("queue")
    try:
        if queue is None:
            raise QueueUnavailable("no queue to delay the job in")
        await queue.enqueue(job_id, delay_s=delay, lane=lane)
    except QueueUnavailable:
        raise Retry(defer=delay) from None


async def job_settled(ctx: dict[str, Any]) -> None:
    """arq's `after_job_end`: arq has recorded the job's end (or its retry) in Redis."""
    slots: Slots = ctx["slots"]
    slots.settled(ctx["job_id"])


def completion_wait_s(settings: Settings) -> float:
    """How long a stopping worker lets its running jobs finish."""
    return math.ceil(arq_job_timeout_s(settings)) + 1


def worker_options(
    settings: Settings, pool: ArqRedis, ctx: dict[str, Any], *, burst: bool = False
) -> dict[str, Any]:
    """arq `Worker` keyword arguments for these Settings. Signals are the supervisor's."""
    return {
        "functions": [func(run_job, name=FUNCTION)],  # type: ignore[arg-type]
        "queue_name": QUEUE_NAME,
        "redis_pool": pool,
        "burst": burst,
        "after_job_end": job_settled,
        "handle_signals": False,
        "max_jobs": settings.worker_concurrency,
        "job_timeout": arq_job_timeout_s(settings),
        "max_tries": MAX_TRIES,
        "keep_result": 0,  # results live in the store; no result key also lets a finished job
        # be enqueued again under the same arq id
        "poll_delay": 0 if burst else settings.arq_poll_delay_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "health_check_key": HEALTH_CHECK_KEY,
        "ctx": ctx,
    }
