"""The worker image's Lambda entry points (chosen by image_config.command in Terraform):

- `handler`: an SQS-triggered batch of job messages, run concurrently, answered with
  `batchItemFailures` (ReportBatchItemFailures) for exactly the records to deliver again;
- `scheduled`: EventBridge, every minute: what each arq worker's sweeper does elsewhere
  (re-enqueue jobs the queue lost, close batches whose check was missed, deliver due webhooks).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared.factory import Services
from shared.heartbeats import Heartbeat
from shared.lambda_runtime import LambdaRuntime
from shared.logs import configure_logging
from worker.sqs_consumer import SqsConsumer

log = logging.getLogger(__name__)

WEBHOOK_BATCH = 100
SCHEDULED_BUDGET_S = 40.0  # leaves room within the scheduler's timeout

_runtime: LambdaRuntime | None = None
_heartbeats: dict[int, Heartbeat] = {}  # this sandbox's, by its Services (one per container)


def runtime() -> LambdaRuntime:
    global _runtime
    if _runtime is None:
        configure_logging()
        _runtime = LambdaRuntime()
    return _runtime


def consumer_for(services: Services) -> SqsConsumer:
    queue = services.sqs
    if queue is None:
        raise RuntimeError("the worker Lambda needs QUEUE_BACKEND=sqs")
    return SqsConsumer(services.executor, queue, services.settings.worker_concurrency)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    rt = runtime()
    services = rt.services()
    return rt.run(handle_jobs(services, event))


async def handle_jobs(services: Services, event: dict[str, Any]) -> dict[str, Any]:
    answer = await consumer_for(services).handle_event(event)
    await services.webhooks.deliver_due(WEBHOOK_BATCH)  # the jobs just finished: don't wait
    await sandbox_heartbeat(services).beat_if_due()
    return answer


def sandbox_heartbeat(services: Services) -> Heartbeat:
    """A sandbox runs no loop between invocations: it beats after handling one, at most every
    WORKER_HEARTBEAT_S."""
    found = _heartbeats.get(id(services))
    if found is None:
        _heartbeats.clear()  # a new Services (tests make several): the old one is closed
        found = _heartbeats[id(services)] = services.heartbeat("lambda")
    return found


def scheduled(event: dict[str, Any] | None = None, context: Any = None) -> dict[str, int]:
    rt = runtime()
    return rt.run(sweep_once(rt.services()))


async def sweep_once(services: Services, budget_s: float = SCHEDULED_BUDGET_S) -> dict[str, int]:
    requeued = await services.sweeper.sweep_due()  # the SQS policy: shared/adapters/choose.py
    deadline = time.monotonic() + budget_s
    delivered = 0
    while time.monotonic() < deadline:
        attempted = await services.webhooks.deliver_due(WEBHOOK_BATCH)
        delivered += attempted
        if attempted < WEBHOOK_BATCH:
            break
    log.info("scheduled sweep: %d jobs re-enqueued, %d webhooks attempted", requeued, delivered)
    return {"requeued": requeued, "webhooks": delivered}
