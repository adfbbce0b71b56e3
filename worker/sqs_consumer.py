"""What a worker does with SQS messages, whoever received them: the Lambda (an SQS event) or
`QUEUE_BACKEND=sqs python -m worker` (long polling). Both go through `handle_records`.

A record either succeeds (its job needs nothing more: SQS may delete it) or is reported as a
batch item failure after its visibility was set to the retry delay, so SQS delivers it again
then and not at once. A record's receive count climbs with every such retry; before it reaches
the DLQ's maxReceiveCount, the retry goes out as a fresh message instead, so only a message that
keeps failing to be handled at all (a poison message) ends in the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from shared.adapters.aws.names import MAX_RECEIVE_COUNT
from shared.adapters.queue.sqs import SqsJobQueue, SqsMessage
from shared.execution import JobExecutor
from shared.lanes import delivering
from worker.ranked_slots import RankedSlots

log = logging.getLogger(__name__)


class SqsConsumer:
    """`slots`: shared with other consumers (the poller's, one per process); else its own."""

    def __init__(
        self,
        executor: JobExecutor,
        queue: SqsJobQueue,
        concurrency: int,
        slots: RankedSlots | None = None,
    ) -> None:
        self.executor, self.queue = executor, queue
        self.slots = slots or RankedSlots(concurrency)

    async def handle_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A Lambda SQS event → the ReportBatchItemFailures answer."""
        records: list[dict[str, Any]] = event.get("Records") or []
        unreadable, messages = [], []
        for record in records:
            try:
                messages.append(SqsJobQueue.parse_event_record(record))
            except ValueError as exc:  # alone; to the DLQ after MAX_RECEIVE_COUNT receives
                log.error("unreadable SQS record %s: %s", record.get("messageId"), exc)
                unreadable.append(str(record.get("messageId", "")))
        retry = [m.message_id for m in await self.handle_messages(messages)]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in unreadable + retry]}

    async def handle_messages(
        self, messages: Sequence[SqsMessage], rank: int = 0
    ) -> list[SqsMessage]:
        """Run the messages' jobs concurrently (up to `concurrency` at a time, a free slot going
        to the lowest `rank` waiting); returns those SQS must deliver again (their visibility
        already set to the retry delay)."""
        outcomes = await asyncio.gather(*(self._handle(m, rank) for m in messages))
        return [m for m, retry in zip(messages, outcomes, strict=True) if retry]

    async def _handle(self, message: SqsMessage, rank: int) -> bool:
        """True when SQS must deliver this message again."""
        async with self.slots.slot(rank):
            with delivering(message.lane):
                delay = await self.executor.deliver(message.job_id)
        if delay is None:
            return False
        return await self._retry_later(message, delay)

    async def _retry_later(self, message: SqsMessage, delay_s: float) -> bool:
        try:
            if message.receive_count < MAX_RECEIVE_COUNT - 1:
                await self.queue.retry_later(message, delay_s)
                return True
            # a fresh receive count, on the queue of its lane
            await self.queue.enqueue(message.job_id, delay_s=delay_s, lane=message.lane)
            return False
        except Exception:
            log.exception("could not schedule the retry of job %s", message.job_id)
            return True  # SQS delivers it again after the visibility timeout
