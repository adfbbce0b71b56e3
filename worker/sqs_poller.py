"""`QUEUE_BACKEND=sqs python -m worker`: the AWS layout's worker on a laptop or a container.

It long-polls both queues and hands what it receives to the same SqsConsumer the Lambda uses,
deleting each message whose job needs nothing more. Single jobs and batch jobs have their own
pollers and their own concurrency, as their two Lambda event source mappings do, so a big batch
never delays a single submit. Every minute it sweeps as the scheduled Lambda does.
"""

from __future__ import annotations

import asyncio
import logging
import math

from shared.adapters.queue.sqs import SqsJobQueue
from shared.config import Settings
from shared.factory import ServiceFactory
from worker.sqs_consumer import SqsConsumer

log = logging.getLogger(__name__)

WAIT_S = 20  # SQS long polling's maximum
BATCH_SIZE = 10  # ReceiveMessage's maximum


async def poll(consumer: SqsConsumer, queue: SqsJobQueue, url: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            messages = await queue.receive(url, BATCH_SIZE, WAIT_S)
            retry = await consumer.handle_messages(messages)
            done = [m for m in messages if m not in retry]
            await asyncio.gather(*(queue.ack(m) for m in done))
        except Exception:
            log.exception("polling %s failed; trying again", url)
            await asyncio.sleep(1)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    services = await ServiceFactory(settings).start(consume=False, deliver_webhooks=True)
    try:
        queue = services.queue
        if not isinstance(queue, SqsJobQueue):
            raise RuntimeError("QUEUE_BACKEND=sqs is needed to poll SQS")
        pollers = max(1, math.ceil(settings.worker_concurrency / BATCH_SIZE))
        tasks = [asyncio.create_task(services.sweeper.sweep_forever(stop))]
        for url in queue.queue_urls:
            consumer = SqsConsumer(services.executor, queue, settings.worker_concurrency)
            tasks += [asyncio.create_task(poll(consumer, queue, url, stop)) for _ in range(pollers)]
        log.info("polling %s with %d pollers each", ", ".join(queue.queue_urls), pollers)
        await stop.wait()
        await asyncio.gather(*tasks)  # pollers finish what they hold (at most one long poll)
    finally:
        await services.close()
