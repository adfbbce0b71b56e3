"""Drive the Lambda handlers as AWS would, against moto's server: API Gateway v2 events into the
API handler, SQS events built from a real ReceiveMessage into the worker handler (deleting what
it does not report as a failure, as the event source mapping does), and scheduled events."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from api import lambda_handler as api_lambda
from shared.adapters.aws.setup import AwsLayout
from worker import lambda_handler as worker_lambda

API_KEY = "key-one"
OTHER_KEY = "key-two"
ACCOUNT = "123456789012"


def api_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    key: str | None = API_KEY,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as Lambda receives it."""
    all_headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8"}
    if key:
        all_headers["authorization"] = f"Bearer {key}"
    if body is not None:
        all_headers["content-type"] = "application/json"
    all_headers |= {k.lower(): v for k, v in (headers or {}).items()}
    raw = body.encode() if isinstance(body, str) else body
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": all_headers["host"],
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(raw).decode() if raw is not None else None,
        "isBase64Encoded": raw is not None,
    }


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def call_api(event: dict[str, Any]) -> Answer:
    raw = api_lambda.handler(event, None)
    body = raw.get("body") or ""
    if raw.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
    return Answer(raw["statusCode"], headers, body)


@dataclass
class SqsDriver:
    """The event source mapping's part: receive, invoke the worker handler, delete successes."""

    layout: AwsLayout
    invocations: int = 0
    failures: list[list[str]] = field(default_factory=list)

    def _sqs(self) -> Any:
        rt = worker_lambda.runtime()
        return rt.run(rt.factory.adapters.aws.client("sqs")), rt

    def receive(self, queue_url: str, max_messages: int = 10, wait_s: int = 1) -> list[Any]:
        sqs, rt = self._sqs()
        response = rt.run(
            sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_s,
                MessageSystemAttributeNames=["All"],
            )
        )
        return list(response.get("Messages", []))

    def invoke(self, queue_url: str, messages: list[Any]) -> list[str]:
        """One worker invocation on these messages; returns the failed message ids."""
        name = queue_url.rsplit("/", 1)[-1]
        records = [_record(m, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}") for m in messages]
        answer = worker_lambda.handler({"Records": records}, None)
        self.invocations += 1
        failed = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
        self.failures.append(failed)
        sqs, rt = self._sqs()
        for message in messages:
            if message["MessageId"] not in failed:
                rt.run(
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                )
        return failed

    @property
    def queue_urls(self) -> list[str]:
        """Each event source mapping's queue, highest priority first."""
        layout = self.layout
        urls = (layout.high_queue_url, layout.queue_url, layout.batch_queue_url)
        return [url for url in (*urls, layout.low_queue_url) if url]

    def drain(self, *, rounds: int = 500, idle_rounds: int = 2) -> int:
        """Deliver until every queue stays empty; returns the messages handled."""
        handled, idle = 0, 0
        for _ in range(rounds):
            got = 0
            for url in self.queue_urls:
                messages = self.receive(url, wait_s=0)
                if messages:
                    self.invoke(url, messages)
                    got += len(messages)
            handled += got
            idle = idle + 1 if got == 0 else 0
            if idle >= idle_rounds:
                return handled
        raise AssertionError("the queues did not drain")


def _record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1",
    }


def reset_handlers() -> None:
    """Forget the per-container state of both handlers (a new container)."""
    for runtime in (api_lambda._runtime, worker_lambda._runtime):
        if runtime is not None:
            runtime.close()
    api_lambda._runtime = api_lambda._adapter = None
    worker_lambda._runtime = None
    asyncio.set_event_loop(None)
