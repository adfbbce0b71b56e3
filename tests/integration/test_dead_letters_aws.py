"""Dead letters in the AWS layout, on moto's server: a job's message that SQS gave up delivering
(received MAX_RECEIVE_COUNT times, never acknowledged) shows in `GET /v1/admin/dead-letters`,
and `POST /v1/admin/dead-letters/jobs/redrive` puts it back, where the SQS poller
(`worker.sqs_poller.serve`) answers the job. Redriving a finished job's message runs nothing
again; a message not ours keeps its body and attributes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from api.app import create_app
from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.queue.sqs import encode, source_queues
from shared.adapters.queue.sqs_dead_letters import SqsDeadLetters
from shared.config import Settings
from shared.factory import ServiceFactory
from shared.lanes import Lane
from tests.integration.test_sqs_poison import queue_counts, sqs_settings
from tests.stubs.fixtures import LLMStub
from worker import sqs_poller

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-key"}
TENANT = {"Authorization": "Bearer k1"}
DEAD_LETTERS = "/v1/admin/dead-letters"


@pytest.fixture
def settings(aws_layout: AwsLayout, moto_endpoint: str, llm_stub: LLMStub) -> Settings:
    return sqs_settings(
        aws_layout,
        moto_endpoint,
        llm_stub,
        sqs_high_queue_url=aws_layout.high_queue_url,
        sqs_low_queue_url=aws_layout.low_queue_url,
        api_keys="t1:k1",
        admin_api_keys="admin-key",
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ServiceFactory(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(20):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def depths(api: httpx.AsyncClient) -> dict[str, int]:
    report = await api.get(DEAD_LETTERS, headers=ADMIN)
    assert report.status_code == 200, report.text
    assert report.json()["has_dead_letter_queues"] is True
    return {q["queue"]: q["messages"] for q in report.json()["data"]}


async def give_up_on(clients: AwsClients, queue_url: str) -> None:
    """Receive the queue's messages without acknowledging them until SQS moves them to the DLQ
    (moto does it at the receive after the MAX_RECEIVE_COUNT-th)."""
    sqs = await clients.client("sqs")
    for _ in range(names.MAX_RECEIVE_COUNT + 1):
        await sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
    assert await queue_counts(clients, queue_url) == (0, 0)


async def job(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await api.get(f"/v1/jobs/{job_id}", headers=TENANT)).json()
    return found


@asynccontextmanager
async def polling(settings: Settings) -> AsyncIterator[None]:
    """The SQS poller running. One for the whole test: a stopped poller's long polls go on at
    the server a while, and would hide a message sent meanwhile."""
    stop = asyncio.Event()
    worker = asyncio.create_task(sqs_poller.serve(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


async def test_a_jobs_dead_letter_is_listed_redriven_and_answered(
    api: httpx.AsyncClient, settings: Settings, aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    assert await depths(api) == {"high": 0, "jobs": 0, "batch": 0, "low": 0}
    job_id = (await api.post("/v1/jobs", json=chat("dead once"), headers=TENANT)).json()["id"]
    await give_up_on(aws_clients, aws_layout.queue_url)
    assert (await depths(api))["jobs"] == 1

    redriven = await api.post(f"{DEAD_LETTERS}/jobs/redrive", headers=ADMIN)

    assert redriven.status_code == 200, redriven.text
    assert redriven.json() == {"queue": "jobs", "moved": 1, "remaining": 0}
    assert (await depths(api))["jobs"] == 0
    assert await queue_counts(aws_clients, aws_layout.queue_url) == (1, 0)

    async def answered() -> bool:
        return bool((await job(api, job_id))["status"] == "succeeded")

    async with polling(settings):
        await until(answered, "the job to be answered")


async def test_redriving_a_finished_jobs_message_runs_nothing_again(
    api: httpx.AsyncClient,
    settings: Settings,
    aws_layout: AwsLayout,
    aws_clients: AwsClients,
    llm_stub: LLMStub,
) -> None:
    job_id = (await api.post("/v1/jobs", json=chat("answered once"), headers=TENANT)).json()["id"]

    async def answered() -> bool:
        return bool((await job(api, job_id))["status"] == "succeeded")

    async def acknowledged() -> bool:
        return await queue_counts(aws_clients, aws_layout.queue_url) == (0, 0)

    async with polling(settings):
        await until(answered, "the job to be answered")
        before, calls = await job(api, job_id), llm_stub.state.counts["gemini"]
        # a copy of its message in the DLQ: what a delivery that timed out after the answer
        # leaves there
        sqs = await aws_clients.client("sqs")
        dlq_url = aws_layout.queue_url + names.DLQ_SUFFIX
        await sqs.send_message(QueueUrl=dlq_url, MessageBody=encode(job_id, Lane("normal", "t1")))
        moved = await api.post(f"{DEAD_LETTERS}/jobs/redrive", headers=ADMIN)
        assert moved.json()["moved"] == 1
        await until(acknowledged, "the redriven message to be acknowledged")
    assert await job(api, job_id) == before
    assert llm_stub.state.counts["gemini"] == calls


async def test_a_redriven_message_keeps_its_body_attributes_and_group(
    aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    sqs = await aws_clients.client("sqs")
    dlq_url = aws_layout.low_queue_url + names.DLQ_SUFFIX  # type: ignore[operator]
    attributes = {"origin": {"DataType": "String", "StringValue": "elsewhere"}}
    bodies = [f"not a job #{n}" for n in range(13)]
    for body in bodies:
        await sqs.send_message(
            QueueUrl=dlq_url, MessageBody=body, MessageAttributes=attributes, MessageGroupId="g1"
        )
    sources = source_queues(aws_layout.queue_url, low_queue_url=aws_layout.low_queue_url)
    dead = SqsDeadLetters(aws_clients, sources)

    assert await dead.redrive("low", limit=12) == 12  # bounded: one stays
    assert {d.queue: d.messages for d in await dead.depths()} == {"jobs": 0, "low": 1}
    back = await sqs.receive_message(
        QueueUrl=aws_layout.low_queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["MessageGroupId"],
    )
    for message in back["Messages"]:
        assert message["Body"] in bodies
        assert message["MessageAttributes"]["origin"]["StringValue"] == "elsewhere"
        assert message["Attributes"]["MessageGroupId"] == "g1"


async def test_an_unknown_queue_answers_404_naming_it(api: httpx.AsyncClient) -> None:
    for queue in ("nope", "jobs-dlq"):
        response = await api.post(f"{DEAD_LETTERS}/{queue}/redrive", headers=ADMIN)
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["fields"][0]["field"] == "queue" and queue in error["message"]
    refused = await api.post(f"{DEAD_LETTERS}/jobs/redrive", headers=TENANT)
    assert refused.status_code == 403


def chat(prompt: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}]}
