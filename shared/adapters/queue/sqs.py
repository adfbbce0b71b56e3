"""SqsJobQueue: jobs as SQS messages `{"job_id": …, "priority"?, "tenant"?}`, on a queue by lane.

`normal` singles go to SQS_QUEUE_URL, `normal` batch jobs to SQS_BATCH_QUEUE_URL, and `high` and
`low` jobs, singles and batch alike, to SQS_HIGH_QUEUE_URL and SQS_LOW_QUEUE_URL (unset: to the
`normal` queue of their kind). Consumers take the queues in that order (`queue_urls`): the SQS
poller with weighted polling (worker/sqs_poller.py), the Lambda with one event source mapping per
queue, each capped by its own maximum concurrency (docs/adr/0015).

Producer side (the JobQueue port): `enqueue` is one SendMessage; its delay is capped at SQS's
900 s (the executor keeps a longer delay on the job and honours it when the message comes back
early). `enqueue_many` sends SendMessageBatch calls of 10 entries, 16 calls at a time, and sends
again the entries SQS reports as Failed. Every message carries its tenant as MessageGroupId, which
makes each queue an SQS fair queue: while one tenant floods it, SQS keeps the dwell time of the
other tenants low. Strict turn-taking between tenants is not something SQS offers.

Consumer primitives for the worker (long polling, or a Lambda SQS event): `receive`, `ack`,
`retry_later`, `parse_event_record`. Only `ack` deletes a message; one never acked comes back
after its visibility timeout and moves to the queue's DLQ after MAX_RECEIVE_COUNT receives.
A message whose body is not ours is never acked by `receive`, so it ends in the DLQ too.

Every SQS or connection failure surfaces as QueueUnavailable (the API answers 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws.clients import AwsClients
from shared.errors import QueueUnavailable
from shared.lanes import DEFAULT_LANE, Lane, current_lane, priority_or_default
from shared.ports import JobHandler

log = logging.getLogger(__name__)

MAX_DELAY_S = 900  # SendMessage's DelaySeconds limit
# A job's message comes back at most this long after the job's last change: its longest delay
# (a retry's), a visibility timeout (540 s, shorter) for a dead worker's, plus a minute's slack.
REDELIVERY_HORIZON_S = MAX_DELAY_S + 60.0
MAX_VISIBILITY_S = 43_200  # 12 h, counted from the message's receipt
VISIBILITY_SLACK_S = 60  # stay clear of that limit despite clock skew and time since receipt
MAX_GROUP_ID = 128  # MessageGroupId's limit
BATCH_ENTRIES = 10  # SendMessageBatch's limit
PARALLEL_CALLS = 16
SEND_ATTEMPTS = 5  # for entries SQS reports as Failed (connection retries are botocore's)
RETRY_BASE_S = 0.1
UNAVAILABLE = (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError)
RECEIVE_ATTRIBUTES = ["ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"]
MAX_BODY_CHARS = 1_024  # ours are at most about 200: anything longer was not written by `encode`


@dataclass(frozen=True)
class SqsMessage:
    """One received job message; `ack` and `retry_later` address it by queue URL and receipt."""

    job_id: str
    receipt_handle: str
    queue_url: str
    receive_count: int  # 1 on the first delivery
    body: str
    message_id: str  # a Lambda handler names failed messages by it (batchItemFailures)
    first_received_at: float  # epoch seconds
    lane: Lane = DEFAULT_LANE


def encode(job_id: str, lane: Lane = DEFAULT_LANE) -> str:
    body: dict[str, str] = {"job_id": job_id}
    if lane.priority != DEFAULT_LANE.priority:
        body["priority"] = lane.priority
    if lane.tenant:  # what a retry needs for its MessageGroupId, which SQS cuts at 128
        body["tenant"] = lane.tenant[:MAX_GROUP_ID]
    return json.dumps(body)


def decode_lane(body: str) -> Lane:
    """The lane a message body names (a body of `decode`'s: checked already); an older body,
    with none, is `normal` for no tenant."""
    fields = json.loads(body)
    tenant = fields.get("tenant")
    return Lane(
        priority_or_default(fields.get("priority")), tenant if isinstance(tenant, str) else ""
    )


def decode(body: str) -> str:
    """The job id of a message body; ValueError for anything else, whatever is wrong with it
    (not JSON, nested too deep to parse, too long, not our shape)."""
    if len(body) > MAX_BODY_CHARS:
        raise ValueError(f"not a job message ({len(body)} characters): {body[:200]!r}")
    try:
        job_id = json.loads(body)["job_id"]
    except Exception:  # RecursionError, MemoryError, TypeError, KeyError, ValueError, ...
        raise ValueError(f"not a job message: {body[:200]!r}") from None
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"not a job message: {body[:200]!r}")
    return job_id


def queue_url_from_arn(arn: str) -> str:
    """`arn:aws:sqs:<region>:<account>:<name>` → `https://sqs.<region>.amazonaws.com/<account>/<name>`.

    The client sends each call to its own endpoint with the URL as a parameter, and moto and
    LocalStack find the queue by the URL's last segment, so this URL serves there too."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    _, partition, _, region, account, name = parts
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


class SqsJobQueue:
    """Builds no client and opens no connection until its first call."""

    def __init__(
        self,
        clients: AwsClients,
        queue_url: str,
        batch_queue_url: str | None = None,
        *,
        high_queue_url: str | None = None,
        low_queue_url: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._clients = clients
        self.queue_url = queue_url
        self.batch_queue_url = batch_queue_url or queue_url
        self.high_queue_url = high_queue_url
        self.low_queue_url = low_queue_url
        self._timeout_s = timeout_s

    @property
    def queue_urls(self) -> tuple[str, ...]:
        """The queues to consume, in the order to take them: `high`, `normal` singles, `normal`
        batch jobs, `low` (each once, the unset ones left out)."""
        urls = source_queues(
            self.queue_url, self.batch_queue_url, self.high_queue_url, self.low_queue_url
        )
        return tuple(urls.values())

    def url_for(self, lane: Lane, *, batch: bool) -> str:
        """The queue a job of `lane` goes to: its priority's, else the `normal` one of its kind."""
        own = {"high": self.high_queue_url, "low": self.low_queue_url}.get(lane.priority)
        return own or (self.batch_queue_url if batch else self.queue_url)

    def rank_of(self, url: str) -> int:
        """The place of `url` in `queue_urls` (0 is taken first); past the end if unknown."""
        urls = self.queue_urls
        return urls.index(url) if url in urls else len(urls)

    async def start(self, handler: JobHandler | None = None) -> None:
        if handler is not None:
            log.warning("SQS jobs are consumed by the worker, not by this process")

    async def close(self) -> None:
        """Nothing to release: the clients belong to AwsClients."""

    async def enqueue(self, job_id: str, delay_s: float = 0, lane: Lane | None = None) -> None:
        lane = current_lane(lane)
        delay = min(math.ceil(max(delay_s, 0)), MAX_DELAY_S)
        message = {"MessageBody": encode(job_id, lane), "DelaySeconds": delay}
        if lane.tenant:
            message["MessageGroupId"] = lane.tenant[:MAX_GROUP_ID]
        async with self._sqs("SendMessage") as sqs:
            await sqs.send_message(QueueUrl=self.url_for(lane, batch=False), **message)

    async def enqueue_many(
        self, job_ids: Sequence[str], group: str | None = None, lane: Lane | None = None
    ) -> None:
        lane = current_lane(lane)
        url = self.url_for(lane, batch=True)
        chunks = iter(_chunks(job_ids, BATCH_ENTRIES))

        async def sender() -> None:
            for chunk in chunks:  # the senders share one iterator: each takes the next chunk
                await self._send_batch(url, chunk, lane.tenant or group, lane)

        calls = min(PARALLEL_CALLS, math.ceil(len(job_ids) / BATCH_ENTRIES))
        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(calls):
                    tasks.create_task(sender())
        except ExceptionGroup as errors:
            refused, other = errors.split(QueueUnavailable)
            if other is not None or refused is None:
                raise
            raise refused.exceptions[0] from None

    async def ping(self) -> bool:
        try:
            for url in self.queue_urls:
                async with self._sqs("GetQueueAttributes") as sqs:
                    await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except QueueUnavailable:
            return False
        return True

    async def receive(
        self,
        queue_url: str,
        max_messages: int = 10,
        wait_s: int = 20,
        *,
        visibility_timeout_s: int | None = None,
    ) -> list[SqsMessage]:
        """Long-poll up to `max_messages` (1 to 10) for up to `wait_s` (0 to 20) seconds."""
        params: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_s,
            "MessageSystemAttributeNames": RECEIVE_ATTRIBUTES,
        }
        if visibility_timeout_s is not None:
            params["VisibilityTimeout"] = visibility_timeout_s
        async with self._sqs("ReceiveMessage", extra_s=wait_s) as sqs:
            response = await sqs.receive_message(**params)
        return list(_parse_received(queue_url, response.get("Messages", [])))

    async def ack(self, message: SqsMessage) -> None:
        """Delete the message: the job needs no further delivery."""
        async with self._sqs("DeleteMessage") as sqs:
            await sqs.delete_message(
                QueueUrl=message.queue_url, ReceiptHandle=message.receipt_handle
            )

    async def retry_later(self, message: SqsMessage, delay_s: float) -> None:
        """Hide the message for `delay_s`, at most what is left of its 12 h in flight (SQS
        refuses more): it comes back then, with its receive count one higher."""
        in_flight_s = max(time.time() - message.first_received_at, 0)
        left_s = MAX_VISIBILITY_S - VISIBILITY_SLACK_S - in_flight_s
        timeout = max(min(math.ceil(max(delay_s, 0)), math.floor(left_s)), 0)
        async with self._sqs("ChangeMessageVisibility") as sqs:
            await sqs.change_message_visibility(
                QueueUrl=message.queue_url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=timeout,
            )

    @staticmethod
    def parse_event_record(record: Mapping[str, Any]) -> SqsMessage:
        """One record of a Lambda SQS event as an SqsMessage. Its `queue_url` is derived from
        `eventSourceARN` (see `queue_url_from_arn`), so `retry_later` works on it; `ack` is
        not needed there, Lambda deletes the messages not reported as batch item failures.
        Raises ValueError for a record that is not a job message, whatever is wrong with it."""
        try:
            return SqsMessage(
                job_id=decode(record["body"]),
                receipt_handle=record["receiptHandle"],
                queue_url=queue_url_from_arn(record["eventSourceARN"]),
                message_id=record["messageId"],
                body=record["body"],
                lane=decode_lane(record["body"]),
                **_receipt(record.get("attributes", {})),
            )
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"not an SQS job record: {exc!r}") from None

    async def _send_batch(
        self, url: str, job_ids: Sequence[str], group: str | None, lane: Lane
    ) -> None:
        pending = {str(n): _entry(str(n), job_id, group, lane) for n, job_id in enumerate(job_ids)}
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
            async with self._sqs("SendMessageBatch") as sqs:
                response = await sqs.send_message_batch(
                    QueueUrl=url, Entries=list(pending.values())
                )
            failed = response.get("Failed", [])
            if not failed:
                return
            if any(f.get("SenderFault") for f in failed):  # sending it again will not help
                raise QueueUnavailable(f"SQS refused a batch message: {_describe(failed)}")
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
        raise QueueUnavailable(
            f"SQS refused {len(pending)} batch messages {SEND_ATTEMPTS} times: {_describe(failed)}"
        )

    def _sqs(self, action: str, extra_s: float = 0) -> AbstractAsyncContextManager[Any]:
        return sqs_call(self._clients, action, self._timeout_s + extra_s)


def source_queues(
    queue_url: str,
    batch_queue_url: str | None = None,
    high_queue_url: str | None = None,
    low_queue_url: str | None = None,
) -> dict[str, str]:
    """The job queues by role, in the order consumers take them: `high`, `jobs` (`normal`
    singles), `batch` (`normal` batch jobs), `low`; each URL once, the unset ones left out."""
    roles = {
        "high": high_queue_url,
        "jobs": queue_url,
        "batch": batch_queue_url or queue_url,
        "low": low_queue_url,
    }
    found: dict[str, str] = {}
    for role, url in roles.items():
        if url and url not in found.values():
            found[role] = url
    return found


@asynccontextmanager
async def sqs_call(clients: AwsClients, action: str, timeout_s: float) -> AsyncIterator[Any]:
    """The shared SQS client, with a deadline, and any failure as QueueUnavailable."""
    try:
        sqs = await clients.client("sqs")  # a cold start opens it: not within the deadline
        async with asyncio.timeout(timeout_s):
            yield sqs
    except UNAVAILABLE as exc:
        raise QueueUnavailable(f"SQS {action} failed: {exc!r}") from exc


def _entry(entry_id: str, job_id: str, group: str | None, lane: Lane) -> dict[str, str]:
    entry = {"Id": entry_id, "MessageBody": encode(job_id, lane)}
    if group:
        entry["MessageGroupId"] = group[:MAX_GROUP_ID]
    return entry


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parse_received(queue_url: str, raws: list[dict[str, Any]]) -> Iterator[SqsMessage]:
    """The job messages among `raws`. One that cannot be read, for whatever reason, is left
    alone: never deleted, it comes back after its visibility timeout and, after
    MAX_RECEIVE_COUNT receives, moves to the DLQ, while the others go on."""
    for raw in raws:
        try:
            message = _received(queue_url, raw)
        except Exception as exc:
            log.warning("leaving message %s for the DLQ: %s", raw.get("MessageId"), exc)
            continue
        yield message


def _received(queue_url: str, raw: Mapping[str, Any]) -> SqsMessage:
    return SqsMessage(
        job_id=decode(raw["Body"]),
        receipt_handle=raw["ReceiptHandle"],
        queue_url=queue_url,
        message_id=raw["MessageId"],
        body=raw["Body"],
        lane=decode_lane(raw["Body"]),
        **_receipt(raw.get("Attributes", {})),
    )


def _receipt(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "receive_count": int(attributes.get("ApproximateReceiveCount", 1)),
        "first_received_at": _epoch_s(attributes.get("ApproximateFirstReceiveTimestamp")),
    }


def _epoch_s(millis: str | None) -> float:
    return int(millis) / 1000 if millis else time.time()


def _describe(failed: list[dict[str, Any]]) -> str:
    first = failed[0]
    return f"{first.get('Code')}: {first.get('Message')}"
