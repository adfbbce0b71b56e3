"""Signed webhooks end to end: a receiver built on `standardwebhooks` verifies every delivery;
failed deliveries come again with the same `webhook-id`, also after the worker is replaced."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from shared.webhooks import tenant_secret
from tests.e2e.conftest import Launcher, chat
from tests.e2e.services import KEYS, flush_redis, service_env, wait_until
from tests.stubs.fixtures import LLMStub
from tests.stubs.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SCHEDULE = "0,3,3,3"  # seconds before each attempt: room to replace the worker in between


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(answers=[500]).start()
    try:
        yield started
    finally:
        started.stop()


def submit_with_webhook(http: httpx.Client, prompt: str, url: str) -> dict[str, Any]:
    response = http.post("/v1/jobs", json=chat(prompt, webhook_url=url))
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["webhook"]["url"] == url and job["webhook"]["state"] == "pending"
    return job


def webhook_of(http: httpx.Client, job_id: str) -> dict[str, Any]:
    hook: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()["webhook"] or {}
    return hook


def test_failed_deliveries_are_retried_with_the_same_id_until_delivered(
    llm_stub: LLMStub, receiver: WebhookReceiver, launcher: Launcher
) -> None:
    api = launcher.api(**service_env(llm_stub, WEBHOOK_RETRY_SCHEDULE="0,1,1,1"))  # embedded mode
    receiver.answers = [500, 503, 200]
    with api.client(KEYS["t1"]) as http, api.client(KEYS["t2"]) as other:
        receiver.secret = http.get("/v1/webhook-secret").json()["secret"]
        other_secret = other.get("/v1/webhook-secret").json()["secret"]
        job = submit_with_webhook(http, "hook me", receiver.url)
        done = api.wait_terminal([job["id"]], timeout=20, client=http)[job["id"]]
        assert done["status"] == "succeeded"
        assert done["webhook"] is not None, "no webhook scheduled with the job's last transition"
        hook = wait_until(
            lambda: webhook_of(http, job["id"]),
            lambda w: w.get("state") == "delivered",
            timeout=20,
            what="webhook delivered",
        )

    assert hook["attempts"] == 3 and hook["last_status_code"] == 200
    deliveries = receiver.received()
    assert [d.status for d in deliveries] == [500, 503, 200]
    assert all(d.verified for d in deliveries)
    assert {d.webhook_id for d in deliveries} == {hook["id"]}
    event = deliveries[-1].payload
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job["id"]
    assert event["data"]["result"]["content"] == "gemini says: hook me"
    with pytest.raises(WebhookVerificationError):  # signed for t1 only
        Webhook(other_secret).verify(deliveries[-1].body, deliveries[-1].headers)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_delivery_survives_the_worker_being_replaced(
    llm_stub: LLMStub,
    redis_url: str,
    receiver: WebhookReceiver,
    launcher: Launcher,
    stop: signal.Signals,
) -> None:
    flush_redis(redis_url)
    env = service_env(llm_stub, redis_url, WEBHOOK_RETRY_SCHEDULE=SCHEDULE)
    api = launcher.api(**env)
    first_worker = launcher.worker("worker-1", **env)
    receiver.answers = [500, 200]
    with api.client(KEYS["t1"]) as http:
        receiver.secret = http.get("/v1/webhook-secret").json()["secret"]
        job = submit_with_webhook(http, "survive a restart", receiver.url)
        done = api.wait_terminal([job["id"]], timeout=20, client=http)[job["id"]]
        assert done["status"] == "succeeded"
        assert done["webhook"] is not None, "no webhook scheduled with the job's last transition"

        # the first attempt fails and is recorded; then the worker goes away
        failed = wait_until(
            lambda: webhook_of(http, job["id"]),
            lambda w: w.get("attempts") == 1,
            timeout=10,
            what="first attempt recorded",
        )
        assert failed["state"] == "pending" and failed["last_status_code"] == 500
        first_worker.kill(stop)
        first_worker.popen.wait(20)
        assert len(receiver.received()) == 1

        launcher.worker("worker-2", **env)
        hook = wait_until(
            lambda: webhook_of(http, job["id"]),
            lambda w: w.get("state") == "delivered",
            timeout=20,
            what="webhook delivered by the new worker",
        )

    assert hook["attempts"] == 2 and hook["last_status_code"] == 200
    deliveries = receiver.received()
    assert [d.status for d in deliveries] == [500, 200]
    assert all(d.verified for d in deliveries)
    assert {d.webhook_id for d in deliveries} == {hook["id"]}
    assert deliveries[-1].payload["type"] == "job.succeeded"
    assert deliveries[-1].payload["data"]["id"] == job["id"]


def test_during_a_secret_rotation_receivers_on_either_secret_accept_each_delivery(
    llm_stub: LLMStub, receiver: WebhookReceiver, launcher: Launcher
) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    rotation = {
        "WEBHOOK_SIGNING_SECRET": "e2e-new-master-secret",
        "WEBHOOK_SIGNING_SECRET_PREVIOUS": "e2e-old-master-secret",
        "WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT": expires.isoformat(),
    }
    old_secret = tenant_secret(rotation["WEBHOOK_SIGNING_SECRET_PREVIOUS"], "t1")
    api = launcher.api(**service_env(llm_stub, **rotation))  # embedded mode
    receiver.answers, receiver.secret = [200], old_secret  # this receiver has not switched
    with api.client(KEYS["t1"]) as http:
        secrets = http.get("/v1/webhook-secret").json()
        assert secrets["previous_secret"] == old_secret != secrets["secret"]
        job = submit_with_webhook(http, "rotate", receiver.url)
        wait_until(
            lambda: webhook_of(http, job["id"]),
            lambda w: w.get("state") == "delivered",
            timeout=20,
            what="webhook delivered",
        )

    (delivery,) = receiver.received()
    assert delivery.verified  # with the old secret...
    assert delivery.verifies_with(secrets["secret"])  # ...and the same delivery with the new
