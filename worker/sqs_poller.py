"""`QUEUE_BACKEND=sqs python -m worker`: the AWS layout's worker on a laptop or a container.

It polls every queue (`SqsJobQueue.queue_urls`: `high`, `normal` singles, `normal` batch jobs,
`low`) and hands what it receives to the same SqsConsumer the Lambda uses, deleting each message
whose job needs nothing more. Weighted polling, one `PriorityPoller` a process (docs/adr/0015):
- it receives only while it has room (WORKER_CONCURRENCY slots, `RankedSlots`), and no more
  messages than that room;
- while there is work, it asks the queues in order with short receives (no wait) and takes the
  first queue that answers with messages: a lower queue is read only when the higher ones gave
  nothing;
- when every queue is empty, it long-polls each of them (one receive in flight per queue) and
  takes whatever comes first;
- received messages wait for a slot by their queue's rank, so a `high` message received after
  a `low` one still starts first.
While no LLM provider may be called (quotas full, a 429's pause, circuits open) it receives
nothing: the messages stay visible in their queues, in their order, instead of each costing a
claim, a defer and a ChangeMessageVisibility (`QuotaGate`, worker/quota_gate.py; long polls in
flight are dropped, and what they took comes back after the visibility timeout).
Every minute it sweeps as the scheduled Lambda does; due webhooks are looked for every
WEBHOOKS_EVERY_S (each look is a query per shard of the due-webhooks index, which on moto's
server reads the whole table).

The queues' visibility timeout (540 s) is sized for Lambda, which may hold a record through
retried, throttled invocations. A poller holds what it received for about two jobs' time (one
waiting for a free slot, one running, each bounded by the executor), so it receives with that
visibility instead: when a poller dies (kill -9, a crashed container), its jobs come back that
soon, not nine minutes later. A stop (SIGTERM) ends the long polls at once; running jobs finish.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from shared.adapters.queue.sqs import SqsJobQueue, SqsMessage
from shared.config import Settings
from shared.execution import GUARD_MARGIN_S
from shared.factory import ServiceFactory
from worker.quota_gate import QuotaGate
from worker.sqs_consumer import SqsConsumer

log = logging.getLogger(__name__)

WAIT_S = 20  # SQS long polling's maximum
BATCH_SIZE = 10  # ReceiveMessage's maximum
VISIBILITY_SLACK_S = 10  # for the acknowledgement after the jobs
WEBHOOKS_EVERY_S = 5.0  # each look is a query per shard of the due-webhooks index


Started = dict[asyncio.Task[None], int]  # a task handling received messages: how many


def visibility_s(settings: Settings) -> int:
    """How long a received message stays hidden: a wait for a slot plus a run, with slack."""
    return math.ceil(2 * (settings.job_timeout_s + GUARD_MARGIN_S) + VISIBILITY_SLACK_S)


class PriorityPoller:
    def __init__(
        self,
        consumer: SqsConsumer,
        queue: SqsJobQueue,
        visibility: int,
        idle_wait_s: int = WAIT_S,
        gate: QuotaGate | None = None,
    ) -> None:
        self.consumer, self.queue, self.visibility = consumer, queue, visibility
        self.slots = consumer.slots
        self.idle_wait_s = idle_wait_s
        self.gate = gate
        self._long_polls: dict[str, asyncio.Task[list[SqsMessage]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; then let the received jobs finish."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    await self._turn(stopping)
                except Exception:
                    log.exception("polling SQS failed; trying again")
                    await asyncio.sleep(1)
        finally:
            stopping.cancel()
            for task in self._long_polls.values():  # what they took comes back after visibility
                task.cancel()
            await asyncio.gather(*self._long_polls.values(), return_exceptions=True)
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _turn(self, stopping: asyncio.Future[Any]) -> None:
        room = asyncio.ensure_future(self.slots.until_room())
        try:
            await asyncio.wait({room, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            room.cancel()
        if stopping.done():
            return
        if (hold := await self.gate.hold_s() if self.gate else 0.0) > 0:
            self._drop_long_polls()
            await asyncio.wait({stopping}, timeout=hold)
            return
        wanted = min(self.slots.room, BATCH_SIZE)
        if self.gate is not None:
            wanted = self.gate.take(wanted)
        started: Started = {}
        for url in self.queue.queue_urls:  # highest first; the first that has messages wins
            messages = await self.queue.receive(
                url, wanted, 0, visibility_timeout_s=self.visibility
            )
            if messages:
                started = self._start(url, messages)
                break
        else:
            started = await self._wait_for_any(wanted, stopping)
        await self._settle(started)

    async def _settle(self, started: Started) -> None:
        """A round after a hold: let its jobs take their slots before the next look."""
        if self.gate is not None and self.gate.limited:
            self.gate.took(sum(started.values()))
            await self.gate.settle(started.keys())

    def _drop_long_polls(self) -> None:
        """No receiving while held: what a finished long poll brought is run (SQS hides it
        already), the others are cancelled (what they took comes back after the visibility)."""
        for url, task in list(self._long_polls.items()):
            del self._long_polls[url]
            if not task.done():
                task.cancel()
            elif not task.cancelled() and task.exception() is None:
                self._start(url, task.result())

    async def _wait_for_any(self, wanted: int, stopping: asyncio.Future[Any]) -> Started:
        """Every queue empty: a long poll on each (one in flight per queue), until one answers."""
        for url in self.queue.queue_urls:
            if url not in self._long_polls:
                self._long_polls[url] = asyncio.create_task(
                    self.queue.receive(
                        url, wanted, self.idle_wait_s, visibility_timeout_s=self.visibility
                    )
                )
        await asyncio.wait(
            {*self._long_polls.values(), stopping}, return_when=asyncio.FIRST_COMPLETED
        )
        started: Started = {}
        for url, task in list(self._long_polls.items()):
            if task.done():
                del self._long_polls[url]
                if task.exception() is not None:
                    log.warning("long poll of %s failed: %r", url, task.exception())
                    await asyncio.sleep(1)
                else:
                    started |= self._start(url, task.result())
        return started

    def _start(self, url: str, messages: list[SqsMessage]) -> Started:
        if not messages:
            return {}
        self.slots.expect(len(messages))
        task = asyncio.create_task(self._handle(url, messages))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return {task: len(messages)}

    async def _handle(self, url: str, messages: list[SqsMessage]) -> None:
        try:
            retry = await self.consumer.handle_messages(messages, self.queue.rank_of(url))
            await asyncio.gather(*(self.queue.ack(m) for m in messages if m not in retry))
        except Exception:
            log.exception("handling messages of %s failed; SQS delivers them again", url)


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
        visibility = visibility_s(settings)
        consumer = SqsConsumer(services.executor, queue, settings.worker_concurrency)
        gate = QuotaGate(services.executor.providers_wait_s, settings.worker_concurrency)
        poller = PriorityPoller(consumer, queue, visibility, gate=gate)
        tasks = [
            asyncio.create_task(services.sweeper.sweep_forever(stop)),
            asyncio.create_task(poller.run(stop)),
        ]
        log.info(
            "polling %s in that order, holding messages %d s",
            ", ".join(queue.queue_urls),
            visibility,
        )
        await stop.wait()
        await asyncio.gather(*tasks)  # the poller finishes the jobs it holds, then stops
    finally:
        await services.close()
