"""SqsDeadLetters: the AWS layout's dead-letter queues, one per job queue (each queue's
RedrivePolicy names its own, shared/adapters/aws/setup.py and infra/terraform/sqs.tf).

A redrive moves the messages itself: receive from the DLQ, send each back to its source queue
(body, message attributes and MessageGroupId unchanged), then delete what was sent; at most
`limit` a call. SQS's own StartMessageMoveTask would do it in the background, but moto, which
the tests run against, does not implement it (docs/adr/0017). A move that stops half-way leaves a
message in both queues at worst, never in neither: it is sent before it is deleted, and one not
deleted comes back to the DLQ after MOVE_VISIBILITY_S. A job's message twice is harmless (the
worker's claim is a compare-and-set on the store).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from shared.adapters.aws.clients import AwsClients
from shared.adapters.queue.sqs import BATCH_ENTRIES, sqs_call
from shared.dead_letters import REDRIVE_LIMIT, DeadLetterQueue, UnknownQueue

log = logging.getLogger(__name__)

DEPTH = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
RECEIVE_WAIT_S = 1  # a short poll samples some of SQS's servers only: it can miss messages
MOVE_VISIBILITY_S = 60  # a message being moved is hidden this long, then back in the DLQ


class SqsDeadLetters:
    has_queues = True

    def __init__(
        self, clients: AwsClients, sources: Mapping[str, str], *, timeout_s: float = 5.0
    ) -> None:
        """`sources`: the job queues' URLs by role (shared.adapters.queue.sqs.source_queues)."""
        self._clients, self._sources, self._timeout_s = clients, dict(sources), timeout_s
        self._dlq_urls: dict[str, str] = {}  # by role, from the source's RedrivePolicy

    async def depths(self) -> list[DeadLetterQueue]:
        urls = await asyncio.gather(*(self._dlq_url(role) for role in self._sources))
        pairs = [(role, url) for role, url in zip(self._sources, urls, strict=True) if url]
        return list(await asyncio.gather(*(self._depth(role, url) for role, url in pairs)))

    async def redrive(self, queue: str, limit: int = REDRIVE_LIMIT) -> int:
        dlq_url = await self._dlq_url(queue) if queue in self._sources else None
        if dlq_url is None:
            raise UnknownQueue(queue, list(self._sources))
        moved = 0
        while moved < limit:
            messages = await self._receive(dlq_url, min(BATCH_ENTRIES, limit - moved))
            if not messages:
                break
            sent = await self._send_back(self._sources[queue], messages)
            await self._delete(dlq_url, sent)
            moved += len(sent)
            if len(sent) < len(messages):  # SQS refused some: they stay for the next redrive
                break
        log.info("redrove %d messages from %s back to %s", moved, dlq_url, self._sources[queue])
        return moved

    async def _dlq_url(self, role: str) -> str | None:
        if role not in self._dlq_urls:
            source = self._sources[role]
            async with self._sqs("GetQueueAttributes") as sqs:
                found = await sqs.get_queue_attributes(
                    QueueUrl=source, AttributeNames=["RedrivePolicy"]
                )
            policy = found.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                log.warning("queue %s has no dead-letter queue", source)
                return None
            # a DLQ lives in its source's account and region: only the name differs
            name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[-1]
            self._dlq_urls[role] = f"{source.rsplit('/', 1)[0]}/{name}"
        return self._dlq_urls[role]

    async def _depth(self, role: str, dlq_url: str) -> DeadLetterQueue:
        async with self._sqs("GetQueueAttributes") as sqs:
            found = await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=DEPTH)
        counts = found.get("Attributes", {})
        return DeadLetterQueue(
            queue=role,
            source_queue=_name(self._sources[role]),
            dead_letter_queue=_name(dlq_url),
            messages=int(counts.get(DEPTH[0], 0)),
            in_flight=int(counts.get(DEPTH[1], 0)),
        )

    async def _receive(self, dlq_url: str, count: int) -> list[dict[str, Any]]:
        async with self._sqs("ReceiveMessage", RECEIVE_WAIT_S) as sqs:
            found = await sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=RECEIVE_WAIT_S,
                VisibilityTimeout=MOVE_VISIBILITY_S,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["MessageGroupId"],
            )
        messages: list[dict[str, Any]] = found.get("Messages", [])
        return messages

    async def _send_back(
        self, source_url: str, messages: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Send `messages` to the source queue; returns those SQS took."""
        entries = [_entry(str(n), message) for n, message in enumerate(messages)]
        async with self._sqs("SendMessageBatch") as sqs:
            response = await sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        failed = {f["Id"] for f in response.get("Failed", [])}
        if failed:
            log.warning("SQS refused %d redriven messages; they stay in the DLQ", len(failed))
        return [m for n, m in enumerate(messages) if str(n) not in failed]

    async def _delete(self, dlq_url: str, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
        ]
        async with self._sqs("DeleteMessageBatch") as sqs:
            response = await sqs.delete_message_batch(QueueUrl=dlq_url, Entries=entries)
        if response.get("Failed"):  # sent but not deleted: back in the DLQ later, and harmless
            log.warning("%d redriven messages were not deleted from %s", len(entries), dlq_url)

    def _sqs(self, action: str, extra_s: float = 0) -> AbstractAsyncContextManager[Any]:
        return sqs_call(self._clients, action, self._timeout_s + extra_s)


def _entry(entry_id: str, message: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message["Body"]}
    if attributes := message.get("MessageAttributes"):
        entry["MessageAttributes"] = attributes
    if group := message.get("Attributes", {}).get("MessageGroupId"):
        entry["MessageGroupId"] = group
    return entry


def _name(url: str) -> str:
    return url.rsplit("/", 1)[-1]
