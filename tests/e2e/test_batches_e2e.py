"""A 1,000-prompt batch through the production path: the API and two `python -m worker` processes
on Redis, SQLite shared between them, the stub Gemini over HTTP, a signed-webhook receiver."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Launcher
from tests.e2e.services import KEYS, flush_redis, service_env, wait_until
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

PROMPTS = 1_000


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    try:
        yield started
    finally:
        started.stop()


def sample_counts(http: httpx.Client, batch_id: str, timeout: float) -> list[dict[str, Any]]:
    """Every count seen until the batch ends; each sample must add up to the total."""
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        batch = http.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        counts = batch["counts"]
        parts = ("queued", "running", "succeeded", "failed", "cancelled")
        assert sum(counts[k] for k in parts) == counts["total"] == PROMPTS, counts
        samples.append(counts)
        if batch["status"] != "in_progress":
            assert batch["status"] == "completed", batch
            return samples
        assert time.monotonic() < deadline, f"batch not done after {timeout}s: {counts}"
        time.sleep(0.2)


def batch_webhooks(receiver: WebhookReceiver) -> list[Any]:
    return [d for d in receiver.received() if d.payload["type"] == "batch.completed"]


def test_a_1000_prompt_batch_completes_exactly_with_one_webhook(
    llm_stub: LLMStub, launcher: Launcher, receiver: WebhookReceiver, redis_url: str
) -> None:
    flush_redis(redis_url)
    env = service_env(
        llm_stub, redis_url, WORKER_CONCURRENCY="32", WEBHOOK_RETRY_SCHEDULE="0,2,2,2"
    )
    api = launcher.api(**env)
    launcher.worker("worker-1", **env)
    launcher.worker("worker-2", **env)
    run = uuid.uuid4().hex[:8]  # fresh prompts: nothing is answered from the cache
    custom_ids = [f"req-{(n * 7919) % PROMPTS:04d}" for n in range(PROMPTS)]  # not sorted
    prompts = [f"{run} prompt {n}" for n in range(PROMPTS)]
    lines = [
        json.dumps({"custom_id": c, "messages": [{"role": "user", "content": p}]})
        for c, p in zip(custom_ids, prompts, strict=True)
    ]

    with api.client(KEYS["t1"]) as http:
        receiver.secret = http.get("/v1/webhook-secret").json()["secret"]
        response = http.post(
            "/v1/batches",
            content="\n".join(lines).encode(),
            headers={"Content-Type": "application/x-ndjson"},
            params={"webhook_url": receiver.url},
        )
        assert response.status_code == 202, response.text
        batch_id = response.json()["id"]
        assert response.json()["counts"]["total"] == PROMPTS

        samples = sample_counts(http, batch_id, timeout=90)
        succeeded = [s["succeeded"] for s in samples]
        assert succeeded == sorted(succeeded)  # counts only go up
        assert samples[-1] == {
            "total": PROMPTS, "queued": 0, "running": 0,
            "succeeded": PROMPTS, "failed": 0, "cancelled": 0,
        }  # fmt: skip
        assert llm_stub.stats()["gemini"] == PROMPTS  # each prompt reached the LLM once

        response = http.get(f"/v1/batches/{batch_id}/results")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        results = [json.loads(line) for line in response.text.splitlines()]
        assert [r["custom_id"] for r in results] == custom_ids  # submission order
        assert len({r["job_id"] for r in results}) == PROMPTS
        for result, prompt in zip(results, prompts, strict=True):
            assert result["status"] == "succeeded"
            assert result["result"]["content"] == f"gemini says: {prompt}"

        def read_webhook() -> dict[str, Any]:
            batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
            return batch["webhook"] or {}

        wait_until(lambda: batch_webhooks(receiver), bool, timeout=15, what="batch.completed")
        wait_until(read_webhook, lambda w: w["state"] == "delivered", 10, "webhook delivered")
        time.sleep(2.5)  # a second delivery would be due by now

    [delivery] = batch_webhooks(receiver)
    assert len(receiver.received()) == 1
    assert delivery.verified
    event = delivery.payload
    assert event["data"]["id"] == batch_id and event["data"]["status"] == "completed"
    assert event["data"]["counts"]["succeeded"] == PROMPTS
