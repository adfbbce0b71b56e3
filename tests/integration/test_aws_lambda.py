"""The AWS layout end to end through its Lambda handlers, on moto's server: API Gateway v2 events
into the Mangum handler, SQS events from real ReceiveMessage calls into the worker handler,
scheduled events into the sweep handler; DynamoDB store and cache, Secrets Manager."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout, create_layout
from shared.job_writes import JobWrites
from tests.aws.lambda_harness import (
    API_KEY,
    OTHER_KEY,
    SqsDriver,
    api_event,
    call_api,
    reset_handlers,
)
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver
from worker import lambda_handler as worker_lambda

pytestmark = pytest.mark.integration


def prompt(text: str, **extra: Any) -> str:
    return json.dumps({"messages": [{"role": "user", "content": text}], **extra})


@pytest.fixture
def layout(moto_endpoint: str) -> AwsLayout:
    async def make() -> AwsLayout:
        clients = AwsClients(endpoint_url=moto_endpoint, region="us-east-1")
        try:
            secret = {
                "API_KEYS": f"t1:{API_KEY},t2:{OTHER_KEY}",
                "WEBHOOK_SIGNING_SECRET": "whsec-master-for-tests",
                "GEMINI_API_KEY": "stub-key",
            }
            return await create_layout(clients, prefix=f"l{uuid.uuid4().hex[:8]}-", secret=secret)
        finally:
            await clients.close()

    return asyncio.run(make())


@pytest.fixture
def aws_env(
    layout: AwsLayout, moto_endpoint: str, llm_stub: LLMStub, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AwsLayout]:
    env = {
        **layout.env(),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "chatjobs-test",  # Lambda mode: keys and secret required
        "GEMINI_BASE_URL": llm_stub.gemini_base_url,
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "RATE_LIMIT": "10000/minute",
        "JOB_RETRY_BASE_S": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("API_KEYS", "WEBHOOK_SIGNING_SECRET", "OPENROUTER_API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_handlers()
    yield layout
    reset_handlers()


def test_a_job_goes_through_api_sqs_worker_and_back_from_the_cache(aws_env: AwsLayout) -> None:
    submitted = call_api(api_event("POST", "/v1/jobs", body=prompt("hello aws")))
    assert submitted.status == 202, submitted.body
    job_id = submitted.json()["id"]
    assert submitted.headers["location"] == f"/v1/jobs/{job_id}"

    driver = SqsDriver(aws_env)
    messages = driver.receive(aws_env.queue_url)
    assert [json.loads(m["Body"])["job_id"] for m in messages] == [job_id]
    assert driver.invoke(aws_env.queue_url, messages) == []

    polled = call_api(api_event("GET", f"/v1/jobs/{job_id}", query="wait=5"))
    assert polled.status == 200
    job = polled.json()
    assert job["status"] == "succeeded", job
    assert job["result"]["content"] == "gemini says: hello aws"

    again = call_api(api_event("POST", "/v1/jobs", body=prompt("hello aws")))
    assert again.status == 200 and again.json()["cached"] is True
    assert again.json()["result"]["content"] == "gemini says: hello aws"
    assert driver.receive(aws_env.queue_url, wait_s=0) == []  # nothing enqueued for a hit

    assert call_api(api_event("GET", f"/v1/jobs/{job_id}", key=OTHER_KEY)).status == 404
    assert call_api(api_event("GET", f"/v1/jobs/{job_id}", key="wrong")).status == 401


@pytest.mark.timeout(480)  # every job's DynamoDB and SQS calls go through moto, traced by coverage
def test_a_thousand_prompt_batch_completes_with_one_signed_webhook(
    aws_env: AwsLayout, llm_stub: LLMStub
) -> None:
    receiver = WebhookReceiver().start()
    try:
        secret = call_api(api_event("GET", "/v1/webhook-secret")).json()["secret"]
        receiver.secret = secret
        lines = [
            json.dumps(
                {"custom_id": f"r{n}", "messages": [{"role": "user", "content": f"q{n % 900}"}]}
            )
            for n in range(1_000)
        ]
        created = call_api(
            api_event(
                "POST",
                "/v1/batches",
                body="\n".join(lines),
                query=f"webhook_url={receiver.base_url}/batch",
                headers={"content-type": "application/x-ndjson"},
            )
        )
        assert created.status == 202, created.body
        batch_id = created.json()["id"]

        driver = SqsDriver(aws_env)
        # at least once: on a loaded machine a message can come back after its visibility
        # timeout (seen: 1,002 deliveries); the batch's counts below stay exact all the same
        assert driver.drain() >= 1_000
        assert llm_stub.stats()["gemini"] <= 1_000

        batch = call_api(api_event("GET", f"/v1/batches/{batch_id}")).json()
        assert batch["status"] == "completed"
        assert batch["counts"] == {
            "total": 1_000, "queued": 0, "running": 0, "succeeded": 1_000, "failed": 0,
            "cancelled": 0,
        }  # fmt: skip
        results = call_api(api_event("GET", f"/v1/batches/{batch_id}/results"))
        rows = [json.loads(line) for line in results.body.splitlines()]
        assert [r["custom_id"] for r in rows] == [f"r{n}" for n in range(1_000)]
        assert all(r["status"] == "succeeded" for r in rows)

        worker_lambda.scheduled({}, None)  # the minute's sweep delivers what is due
        worker_lambda.scheduled({}, None)
        batch_events = [d for d in receiver.deliveries if d.path == "/batch"]
        assert len(batch_events) == 1
        assert batch_events[0].verified
        assert batch_events[0].payload["type"] == "batch.completed"
        assert batch_events[0].payload["data"]["id"] == batch_id
    finally:
        receiver.stop()


def test_a_transient_failure_is_reported_for_that_record_only(
    aws_env: AwsLayout, llm_stub: LLMStub
) -> None:
    ids = [
        call_api(api_event("POST", "/v1/jobs", body=prompt(f"p{n}"))).json()["id"] for n in range(3)
    ]
    llm_stub.set("gemini", "fail", status=503, times=1)
    driver = SqsDriver(aws_env)
    messages = driver.receive(aws_env.queue_url)
    assert len(messages) == 3
    failed = driver.invoke(aws_env.queue_url, messages)
    assert len(failed) == 1
    (failed_message,) = [m for m in messages if m["MessageId"] in failed]
    retried_id = json.loads(failed_message["Body"])["job_id"]
    for job_id in ids:
        job = call_api(api_event("GET", f"/v1/jobs/{job_id}")).json()
        if job_id == retried_id:
            assert job["status"] == "queued" and job["error"]["code"] == "retrying", job
        else:
            assert job["status"] == "succeeded", job
    # Its visibility became the retry delay (about 1 s here), not an immediate redelivery.
    assert driver.receive(aws_env.queue_url, wait_s=0) == []
    again = driver.receive(aws_env.queue_url, wait_s=5)
    assert [json.loads(m["Body"])["job_id"] for m in again] == [retried_id]
    assert driver.invoke(aws_env.queue_url, again) == []
    assert call_api(api_event("GET", f"/v1/jobs/{retried_id}")).json()["status"] == "succeeded"


def test_the_same_message_twice_runs_the_llm_once(aws_env: AwsLayout, llm_stub: LLMStub) -> None:
    job_id = call_api(api_event("POST", "/v1/jobs", body=prompt("twice"))).json()["id"]
    driver = SqsDriver(aws_env)
    (message,) = driver.receive(aws_env.queue_url)
    duplicate = {**message, "MessageId": str(uuid.uuid4())}  # SQS's at-least-once delivery
    # Both copies in one invocation: one runs the job; the other finds it running under a lease
    # and asks to come back after it (a batch item failure), rather than dropping it.
    failed = driver.invoke(aws_env.queue_url, [message, duplicate])
    assert len(failed) <= 1
    assert llm_stub.stats()["gemini"] == 1
    job = call_api(api_event("GET", f"/v1/jobs/{job_id}")).json()
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    # The copy delivered again later finds the job finished: acknowledged, nothing run.
    assert driver.invoke(aws_env.queue_url, [duplicate]) == []
    assert llm_stub.stats()["gemini"] == 1
    # ... and counted once in the tenant's usage.
    (usage,) = call_api(api_event("GET", "/v1/usage")).json()["data"]
    assert (usage["requests"], usage["succeeded"], usage["llm_calls"]) == (1, 1, 1)


def test_a_poison_message_reaches_the_dlq_after_five_receives(aws_env: AwsLayout) -> None:
    driver = SqsDriver(aws_env)
    rt = worker_lambda.runtime()
    sqs = rt.run(rt.factory.adapters.aws.client("sqs"))
    rt.run(sqs.send_message(QueueUrl=aws_env.queue_url, MessageBody="not a job"))
    for _ in range(5):
        (message,) = driver.receive(aws_env.queue_url)
        assert driver.invoke(aws_env.queue_url, [message]) == [message["MessageId"]]
        rt.run(
            sqs.change_message_visibility(
                QueueUrl=aws_env.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )
        )
    assert driver.receive(aws_env.queue_url, wait_s=0) == []
    dlq = rt.run(sqs.get_queue_url(QueueName=aws_env.queue_url.rsplit("/", 1)[-1] + "-dlq"))
    dead = rt.run(sqs.receive_message(QueueUrl=dlq["QueueUrl"], WaitTimeSeconds=1))
    assert [m["Body"] for m in dead["Messages"]] == ["not a job"]


def test_a_poison_message_is_reported_alone_and_the_jobs_beside_it_finish(
    aws_env: AwsLayout,
) -> None:
    poison = '{"job_id":"x","n":' + "[" * 5000 + "]" * 5000 + "}"  # RecursionError in json
    rt = worker_lambda.runtime()
    sqs = rt.run(rt.factory.adapters.aws.client("sqs"))
    rt.run(sqs.send_message(QueueUrl=aws_env.queue_url, MessageBody=poison))
    ids = [
        call_api(api_event("POST", "/v1/jobs", body=prompt(f"beside {n}"))).json()["id"]
        for n in range(20)
    ]
    driver = SqsDriver(aws_env)
    started = time.monotonic()
    first = driver.receive(aws_env.queue_url)
    (bad,) = [m for m in first if m["Body"] == poison]  # in the same invocation as 9 jobs
    assert driver.invoke(aws_env.queue_url, first) == [bad["MessageId"]]
    assert driver.drain() == 11
    assert time.monotonic() - started < 15
    for job_id in ids:
        assert call_api(api_event("GET", f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"
    # Reported as failed, so not deleted: in flight until its visibility timeout, then back.
    attrs = rt.run(
        sqs.get_queue_attributes(
            QueueUrl=aws_env.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_a_job_whose_worker_died_runs_again_exactly_once(
    aws_env: AwsLayout, llm_stub: LLMStub
) -> None:
    job_id = call_api(api_event("POST", "/v1/jobs", body=prompt("orphan"))).json()["id"]
    driver = SqsDriver(aws_env)
    (message,) = driver.receive(aws_env.queue_url)
    rt = worker_lambda.runtime()
    services = rt.services()
    # A worker claims the job with a lease that has already run out, then dies (no answer).
    from datetime import timedelta

    from shared.models import utcnow

    now = utcnow()
    claimed = rt.run(
        JobWrites(services.store).claim(job_id, lease_until=now - timedelta(seconds=1), now=now)
    )
    assert claimed is not None and claimed.attempts == 1
    # Its visibility timeout runs out: SQS delivers the same message again.
    sqs = rt.run(rt.factory.adapters.aws.client("sqs"))
    rt.run(
        sqs.change_message_visibility(
            QueueUrl=aws_env.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    )
    (again,) = driver.receive(aws_env.queue_url)
    assert driver.invoke(aws_env.queue_url, [again]) == []
    job = call_api(api_event("GET", f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert llm_stub.stats()["gemini"] == 1
    assert driver.receive(aws_env.queue_url, wait_s=0) == []


def test_fifty_warm_invocations_create_each_client_once(
    aws_env: AwsLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from shared.adapters.llm import gemini
    from shared.adapters.llm.http_session import new_session

    made: dict[str, int] = {"httpx": 0, "gemini": 0}
    original = httpx.AsyncClient.__init__

    def counting(self: Any, *args: Any, **kw: Any) -> None:
        made["httpx"] += 1
        original(self, *args, **kw)

    def counting_sessions(*args: Any, _new: Any = new_session, **kw: Any) -> Any:
        made["gemini"] += 1
        return _new(*args, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting)
    monkeypatch.setattr(gemini, "new_session", counting_sessions)

    driver = SqsDriver(aws_env)
    for n in range(50):
        assert call_api(api_event("POST", "/v1/jobs", body=prompt(f"warm {n}"))).status == 202
        driver.invoke(aws_env.queue_url, driver.receive(aws_env.queue_url, wait_s=0))
        worker_lambda.scheduled({}, None)

    from api import lambda_handler as api_lambda

    assert api_lambda._runtime is not None and worker_lambda._runtime is not None
    for runtime in (api_lambda._runtime, worker_lambda._runtime):
        assert runtime.factory.adapters.aws.opened == 2  # dynamodb and sqs, once per container
    # Per container: the Gemini provider's HTTP session, and the webhook sender's httpx client.
    assert made == {"gemini": 2, "httpx": 2}


def test_the_rate_limit_holds_across_two_api_containers(
    aws_env: AwsLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import subprocess
    import sys

    monkeypatch.setenv("RATE_LIMIT", "5/minute")
    events = "".join(
        json.dumps(api_event("POST", "/v1/jobs", body=prompt(f"limited {n}"))) + "\n"
        for n in range(4)
    )
    containers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.aws.invoke_api"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(2)
    ]
    statuses = [int(s) for c in containers for s in c.communicate(events, timeout=120)[0].split()]
    assert all(c.returncode == 0 for c in containers)
    assert sorted(statuses) == [202] * 5 + [429] * 3
