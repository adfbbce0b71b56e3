"""`QUEUE_BACKEND=sqs python -m worker`: the AWS layout's worker on a laptop or a container.

It long-polls both queues and hands what it receives to the same SqsConsumer the Lambda uses,
deleting each message whose job needs nothing more. Single jobs and batch jobs have their own
pollers and their own concurrency, as their two Lambda event source mappings do, so a big batch
never delays a single submit. Every minute it sweeps as the scheduled Lambda does; due webhooks
are looked for every WEBHOOKS_EVERY_S (each look is a query per shard of the due-webhooks index,
which on moto's server reads the whole table).

The queues' visibility timeout (540 s) is sized for Lambda, which may hold a record through
retried, throttled invocations. A poller holds what it received for at most two jobs' time (one
waiting for a free slot, one running, each bounded by the executor), so it receives with that
visibility instead: when a poller dies (kill -9, a crashed container), its jobs come back that
soon, not nine minutes later. A stop (SIGTERM) ends the long polls at once; running jobs finish.
"""

from __future__ import annotations

import asyncio
import logging
import math

from shared.adapters.queue.sqs import SqsJobQueue, SqsMessage
from shared.config import Settings
from shared.execution import GUARD_MARGIN_S
from shared.factory import ServiceFactory
from worker.sqs_consumer import SqsConsumer

log = logging.getLogger(__name__)

WAIT_S = 20  # SQS long polling's maximum
BATCH_SIZE = 10  # ReceiveMessage's maximum
VISIBILITY_SLACK_S = 10  # for the acknowledgement after the jobs
WEBHOOKS_EVERY_S = 5.0  # each look is a query per shard of the due-webhooks index


def visibility_s(settings: Settings) -> int:
    """How long a received message stays hidden: a wait for a slot plus a run, with slack."""
    return math.ceil(2 * (settings.job_timeout_s + GUARD_MARGIN_S) + VISIBILITY_SLACK_S)


async def poll(
    consumer: SqsConsumer, queue: SqsJobQueue, url: str, stop: asyncio.Event, visibility: int
) -> None:
    while not stop.is_set():
        try:
            messages = await receive_until_stopped(queue, url, stop, visibility)
            retry = await consumer.handle_messages(messages)
            done = [m for m in messages if m not in retry]
            await asyncio.gather(*(queue.ack(m) for m in done))
        except Exception:
            log.exception("polling %s failed; trying again", url)
            await asyncio.sleep(1)


async def receive_until_stopped(
    queue: SqsJobQueue, url: str, stop: asyncio.Event, visibility: int
) -> list[SqsMessage]:
    """One long poll, abandoned when `stop` is set (what it may have taken comes back after
    `visibility` seconds)."""
    receiving = asyncio.ensure_future(
        queue.receive(url, BATCH_SIZE, WAIT_S, visibility_timeout_s=visibility)
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        receiving.cancel()  # no-op when it is done
    await asyncio.wait({receiving})  # its cancellation done (this task's is not swallowed)
    return [] if receiving.cancelled() else receiving.result()


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    services = await ServiceFactory(settings).start(
        consume=False, deliver_webhooks=False, heartbeat="sqs-poller"
    )
    webhooks = services.webhooks
    services.background.start("webhooks", lambda end: webhooks.run_forever(WEBHOOKS_EVERY_S, end))
    try:
        queue = services.sqs
        if queue is None:
            raise RuntimeError("QUEUE_BACKEND=sqs is needed to poll SQS")
        pollers = max(1, math.ceil(settings.worker_concurrency / BATCH_SIZE))
        visibility = visibility_s(settings)
        tasks = [asyncio.create_task(services.sweeper.sweep_forever(stop))]
        for url in queue.queue_urls:
            consumer = SqsConsumer(services.executor, queue, settings.worker_concurrency)
            tasks += [
                asyncio.create_task(poll(consumer, queue, url, stop, visibility))
                for _ in range(pollers)
            ]
        log.info(
            "polling %s with %d pollers each, holding messages %d s",
            ", ".join(queue.queue_urls),
            pollers,
            visibility,
        )
        await stop.wait()
        await asyncio.gather(*tasks)  # pollers finish the jobs they hold, then stop
    finally:
        await services.close()
