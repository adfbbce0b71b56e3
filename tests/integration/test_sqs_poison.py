"""A message that cannot be read never holds up the jobs received with it: `QUEUE_BACKEND=sqs
python -m worker`'s pollers (`worker.sqs_poller.serve`) on moto's server, the stub Gemini over HTTP.
The Lambda handler's side is in test_aws_lambda.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.config import Settings
from shared.factory import ServiceFactory
from shared.models import JobCreate, JobStatus, Message
from tests.conftest import make_settings
from tests.stubs.fixtures import LLMStub
from worker import sqs_poller

pytestmark = pytest.mark.integration

# json.loads raises RecursionError on it, not ValueError.
POISON = '{"job_id":"x","n":' + "[" * 5000 + "]" * 5000 + "}"
JOBS = 20


def sqs_settings(layout: AwsLayout, endpoint: str, llm_stub: LLMStub, **extra: Any) -> Settings:
    """The AWS layout on moto, without a cache, answered by the stub Gemini."""
    return make_settings(
        queue_backend="sqs",
        store_backend="dynamodb",
        cache_backend="none",
        dynamodb_table=layout.table,
        sqs_queue_url=layout.queue_url,
        sqs_batch_queue_url=layout.batch_queue_url,
        aws_endpoint_url=endpoint,
        gemini_api_key="stub-key",
        gemini_base_url=llm_stub.gemini_base_url,
        **extra,
    )


@pytest.fixture
def settings(aws_layout: AwsLayout, moto_endpoint: str, llm_stub: LLMStub) -> Settings:
    return sqs_settings(aws_layout, moto_endpoint, llm_stub)


async def queue_counts(clients: AwsClients, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    sqs = await clients.client("sqs")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return int(attrs[names[0]]), int(attrs[names[1]])


async def test_a_poison_message_does_not_hold_up_the_jobs_beside_it(
    settings: Settings, aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    sqs = await aws_clients.client("sqs")
    await sqs.send_message(QueueUrl=aws_layout.queue_url, MessageBody=POISON)
    api = await ServiceFactory(settings).start(consume=False)
    stop = asyncio.Event()
    try:
        body = [Message(role="user", content=f"job {n}") for n in range(JOBS)]
        jobs = [await api.chat.submit("t1", JobCreate(messages=[m])) for m in body]
        started = time.monotonic()
        worker = asyncio.create_task(sqs_poller.serve(settings, stop))

        async def all_succeeded() -> bool:
            found = [await api.store.get_job(job.id) for job in jobs]
            return all(j is not None and j.status is JobStatus.succeeded for j in found)

        async with asyncio.timeout(15):
            while not await all_succeeded():
                assert not worker.done(), worker
                await asyncio.sleep(0.2)
        took = time.monotonic() - started
        # The poison was received (it is in flight) and left there for the DLQ, not deleted.
        assert await queue_counts(aws_clients, aws_layout.queue_url) == (0, 1)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)
        await api.close()
    assert took < 15
