"""SqsJobQueue on moto's server: what the JobQueue contract does not cover.

Calls are observed (and, to make SQS report failed entries, altered) with botocore's own event
hooks on the real client; every message still travels to moto and back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.queue.sqs import MAX_DELAY_S, SqsJobQueue, SqsMessage, decode, encode
from shared.errors import QueueUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture
async def queue(aws_clients: AwsClients, aws_layout: AwsLayout) -> AsyncIterator[SqsJobQueue]:
    queue = SqsJobQueue(aws_clients, aws_layout.queue_url, aws_layout.batch_queue_url)
    await queue.start()
    yield queue
    await queue.close()


async def api_params(clients: AwsClients, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call made from now on, as the caller gave them."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    sqs = await clients.client("sqs")
    sqs.meta.events.register(f"before-parameter-build.sqs.{operation}", record)
    return seen


async def receive_all(queue: SqsJobQueue, url: str, count: int) -> list[SqsMessage]:
    got: list[SqsMessage] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await queue.receive(url, wait_s=1)
    assert await queue.receive(url, wait_s=0) == []
    return got


async def test_delays_are_capped_at_sqs_maximum(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    sent = await api_params(aws_clients, "SendMessage")
    await queue.enqueue("job_tomorrow", delay_s=86_400)
    await queue.enqueue("job_soon", delay_s=0.2)
    assert [p["DelaySeconds"] for p in sent] == [MAX_DELAY_S, 1]
    sqs = await aws_clients.client("sqs")
    attrs = await sqs.get_queue_attributes(
        QueueUrl=aws_layout.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "2"


async def test_25_batch_jobs_go_in_3_calls_to_the_batch_queue(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    calls = await api_params(aws_clients, "SendMessageBatch")
    job_ids = [f"job_{n}" for n in range(25)]
    await queue.enqueue_many(job_ids, group="batch_1")
    assert sorted(len(c["Entries"]) for c in calls) == [5, 10, 10]
    assert {e["MessageGroupId"] for c in calls for e in c["Entries"]} == {"batch_1"}
    got = await receive_all(queue, aws_layout.batch_queue_url, 25)
    assert sorted(m.job_id for m in got) == sorted(job_ids)


async def test_singles_and_batch_jobs_land_on_their_own_queues(
    queue: SqsJobQueue, aws_layout: AwsLayout
) -> None:
    await queue.enqueue("single")
    await queue.enqueue_many(["b1", "b2"], group="batch_1")
    singles = await receive_all(queue, aws_layout.queue_url, 1)
    batch = await receive_all(queue, aws_layout.batch_queue_url, 2)
    assert [m.job_id for m in singles] == ["single"]
    assert sorted(m.job_id for m in batch) == ["b1", "b2"]
    assert {m.queue_url for m in batch} == {aws_layout.batch_queue_url}


async def test_without_a_batch_queue_batch_jobs_share_the_singles_queue(
    aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    queue = SqsJobQueue(aws_clients, aws_layout.queue_url)
    assert queue.queue_urls == (aws_layout.queue_url,)
    await queue.enqueue_many(["b1", "b2"])
    got = await receive_all(queue, aws_layout.queue_url, 2)
    assert sorted(m.job_id for m in got) == ["b1", "b2"]


async def test_a_deleted_queue_refuses_jobs(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    sqs = await aws_clients.client("sqs")
    await sqs.delete_queue(QueueUrl=aws_layout.queue_url)
    await sqs.delete_queue(QueueUrl=aws_layout.batch_queue_url)
    with pytest.raises(QueueUnavailable, match="SendMessage"):
        await queue.enqueue("job_a")
    with pytest.raises(QueueUnavailable, match="SendMessageBatch"):
        await queue.enqueue_many([f"job_{n}" for n in range(25)], group="batch_1")
    assert await queue.ping() is False


class FailingEntries:
    """Makes SQS report some entries as Failed, as it does under throttling: the messages of
    `job_ids` are taken out of a request before it is sent and listed as Failed in its answer,
    for the next `times` calls. A request left with no entries is answered without sending it
    (moto would refuse an empty batch; SQS answers such a call with every entry Failed)."""

    def __init__(self, job_ids: set[str], times: int, sender_fault: bool = False) -> None:
        self.bodies = {encode(job_id) for job_id in job_ids}
        self.times = times
        self.sender_fault = sender_fault

    async def install(self, clients: AwsClients) -> None:
        sqs = await clients.client("sqs")
        sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", self.drop)
        sqs.meta.events.register("before-call.sqs.SendMessageBatch", self.skip_if_empty)
        sqs.meta.events.register("after-call.sqs.SendMessageBatch", self.report)

    def drop(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if self.times > 0:
            self.times -= 1
            entries = params["Entries"]
            context["dropped"] = [e["Id"] for e in entries if e["MessageBody"] in self.bodies]
            params["Entries"] = [e for e in entries if e["Id"] not in context["dropped"]]
            context["sent"] = len(params["Entries"])

    def skip_if_empty(
        self, context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        if context.get("dropped") and context.get("sent") == 0:
            return AWSResponse("", 200, HTTPHeaders(), None), {"Successful": []}
        return None

    def report(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        parsed["Failed"] = [
            {"Id": i, "SenderFault": self.sender_fault, "Code": "RequestThrottled", "Message": "!"}
            for i in context.get("dropped", [])
        ]


async def test_entries_sqs_reports_as_failed_are_sent_again(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    calls = await api_params(aws_clients, "SendMessageBatch")
    await FailingEntries({"job_0", "job_3", "job_9"}, times=2).install(aws_clients)
    job_ids = [f"job_{n}" for n in range(10)]
    await queue.enqueue_many(job_ids, group="batch_1")
    assert [len(c["Entries"]) for c in calls] == [10, 3, 3]  # the failed three, twice more
    got = await receive_all(queue, aws_layout.batch_queue_url, 10)
    assert sorted(m.job_id for m in got) == sorted(job_ids)  # each exactly once


async def test_entries_that_keep_failing_raise_queue_unavailable(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    await FailingEntries({"stuck"}, times=100).install(aws_clients)
    with pytest.raises(QueueUnavailable, match="RequestThrottled"):
        await queue.enqueue_many(["fine", "stuck"], group="batch_1")
    got = await receive_all(queue, aws_layout.batch_queue_url, 1)
    assert [m.job_id for m in got] == ["fine"]


async def test_a_sender_fault_is_not_retried(queue: SqsJobQueue, aws_clients: AwsClients) -> None:
    calls = await api_params(aws_clients, "SendMessageBatch")
    await FailingEntries({"bad"}, times=100, sender_fault=True).install(aws_clients)
    with pytest.raises(QueueUnavailable, match="refused a batch message"):
        await queue.enqueue_many(["fine", "bad"], group="batch_1")
    assert len(calls) == 1


async def test_a_message_never_acked_moves_to_the_dlq(
    queue: SqsJobQueue, aws_layout: AwsLayout
) -> None:
    await queue.enqueue("job_poison")
    counts = []
    for _ in range(names.MAX_RECEIVE_COUNT):
        [message] = await queue.receive(aws_layout.queue_url, wait_s=1, visibility_timeout_s=0)
        counts.append(message.receive_count)
    assert counts == list(range(1, names.MAX_RECEIVE_COUNT + 1))
    assert await queue.receive(aws_layout.queue_url, wait_s=0) == []
    dlq_url = aws_layout.queue_url + names.DLQ_SUFFIX
    [dead] = await queue.receive(dlq_url, wait_s=1)
    assert dead.job_id == "job_poison"


async def test_an_acked_message_does_not_come_back(
    queue: SqsJobQueue, aws_layout: AwsLayout
) -> None:
    await queue.enqueue("job_a")
    [message] = await queue.receive(aws_layout.queue_url, wait_s=1, visibility_timeout_s=0)
    await queue.ack(message)
    assert await queue.receive(aws_layout.queue_url, wait_s=1) == []


async def test_retry_later_hides_a_message_for_the_given_time(
    queue: SqsJobQueue, aws_layout: AwsLayout
) -> None:
    await queue.enqueue("job_a")
    [message] = await queue.receive(aws_layout.queue_url, wait_s=1)
    hidden_at = time.monotonic()
    await queue.retry_later(message, 2)
    assert await queue.receive(aws_layout.queue_url, wait_s=1) == []
    [again] = await queue.receive(aws_layout.queue_url, wait_s=3)
    assert time.monotonic() - hidden_at >= 1.9
    assert (again.job_id, again.receive_count) == ("job_a", 2)


async def test_retry_later_is_capped_at_what_is_left_of_12_hours(
    queue: SqsJobQueue, aws_layout: AwsLayout
) -> None:
    await queue.enqueue("job_a")
    [message] = await queue.receive(aws_layout.queue_url, wait_s=1)
    await queue.retry_later(message, 7 * 86_400)  # SQS refuses anything past 12 h in flight
    assert await queue.receive(aws_layout.queue_url, wait_s=0) == []


async def test_a_body_that_is_not_a_job_is_left_for_the_dlq(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    sqs = await aws_clients.client("sqs")
    await sqs.send_message(QueueUrl=aws_layout.queue_url, MessageBody="hello")
    await queue.enqueue("job_a")
    got = await receive_all(queue, aws_layout.queue_url, 1)
    assert [m.job_id for m in got] == ["job_a"]
    attrs = await sqs.get_queue_attributes(
        QueueUrl=aws_layout.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "2"  # not deleted


async def test_a_lambda_event_record_addresses_its_queue(
    queue: SqsJobQueue, aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    sqs = await aws_clients.client("sqs")
    arn = await sqs.get_queue_attributes(QueueUrl=aws_layout.queue_url, AttributeNames=["QueueArn"])
    await queue.enqueue("job_a")
    [received] = await queue.receive(aws_layout.queue_url, wait_s=1)
    record = {  # the shape Lambda's SQS event source mapping delivers
        "messageId": received.message_id,
        "receiptHandle": received.receipt_handle,
        "body": received.body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "ApproximateFirstReceiveTimestamp": str(int(received.first_received_at * 1000)),
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": arn["Attributes"]["QueueArn"],
        "awsRegion": "us-east-1",
    }
    message = SqsJobQueue.parse_event_record(record)
    name = aws_layout.queue_url.rsplit("/", 1)[1]
    assert message.queue_url == f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
    assert (message.job_id, message.receive_count, message.message_id) == (
        "job_a",
        1,
        received.message_id,
    )
    await queue.retry_later(message, 0)  # reaches moto: the client sends to its own endpoint
    [again] = await queue.receive(aws_layout.queue_url, wait_s=1)
    await queue.ack(
        SqsJobQueue.parse_event_record({**record, "receiptHandle": again.receipt_handle})
    )
    assert await queue.receive(aws_layout.queue_url, wait_s=0, visibility_timeout_s=0) == []


def test_a_record_that_is_not_a_job_message_is_refused() -> None:
    record = {
        "messageId": "m",
        "receiptHandle": "r",
        "body": '{"hello": 1}',
        "attributes": {},
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
    }
    with pytest.raises(ValueError, match="not a job message"):
        SqsJobQueue.parse_event_record(record)


@pytest.mark.parametrize(
    "body",
    [
        '{"job_id":"x","n":' + "[" * 5000 + "]" * 5000 + "}",  # RecursionError in json
        encode("j" * 2_000),  # longer than anything `encode` writes for a job id
        '{"job_id": 7}',
        '["job_id"]',
        "null",
        "",
    ],
    ids=["deep", "long", "number", "list", "null", "empty"],
)
def test_any_unreadable_body_is_a_value_error(body: str) -> None:
    with pytest.raises(ValueError, match="not a job message"):
        decode(body)


def test_a_record_missing_its_fields_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not an SQS job record"):
        SqsJobQueue.parse_event_record({"body": encode("job_a"), "messageId": "m"})
