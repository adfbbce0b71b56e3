"""The webhook as the API shows it (on jobs and batches), and GET /v1/webhook-secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.webhooks import tenant_secret
from tests.unit.conftest import T1, Api, chat, running_api

HOOK = "http://127.0.0.1:9/hook"  # the first attempt is due an hour after the event: never sent
PENDING = {
    "url": HOOK,
    "id": None,
    "state": "pending",
    "attempts": 0,
    "last_status_code": None,
    "last_error": None,
    "next_attempt_at": None,
}


@pytest.fixture
async def quiet_api() -> AsyncIterator[Api]:
    async with running_api(webhook_retry_schedule="3600") as running:
        yield running


async def get_json(api: Api, path: str) -> Any:
    response = await api.client.get(path, headers=T1)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_queued_job_shows_its_webhook_pending_from_the_start(quiet_api: Api) -> None:
    submitted = await quiet_api.submit(chat(webhook_url=HOOK))
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "queued" and job["webhook"] == PENDING
    assert (await get_json(quiet_api, f"/v1/jobs/{job['id']}"))["webhook"] == PENDING
    (listed,) = (await get_json(quiet_api, "/v1/jobs"))["data"]
    assert listed["webhook"] == PENDING


async def test_once_the_job_finishes_the_webhook_has_its_id_and_due_time(quiet_api: Api) -> None:
    job = (await quiet_api.submit(chat(webhook_url=HOOK))).json()
    await quiet_api.queue.drain()
    hook = (await get_json(quiet_api, f"/v1/jobs/{job['id']}"))["webhook"]
    assert hook["url"] == HOOK and hook["state"] == "pending"
    assert hook["id"].startswith("msg_") and hook["next_attempt_at"] is not None


async def test_a_job_without_webhook_url_shows_none(quiet_api: Api) -> None:
    job = (await quiet_api.submit(chat())).json()
    assert job["webhook"] is None
    await quiet_api.queue.drain()
    assert (await get_json(quiet_api, f"/v1/jobs/{job['id']}"))["webhook"] is None


async def test_a_batch_and_its_jobs_show_their_webhooks_pending_from_the_start(
    quiet_api: Api,
) -> None:
    own = "http://127.0.0.1:9/own"
    requests = [
        {"custom_id": "a", **chat("a")},
        {"custom_id": "b", **chat("b", webhook_url=own)},
    ]
    body = {"requests": requests, "webhook_url": HOOK}
    response = await quiet_api.client.post("/v1/batches", json=body, headers=T1)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["status"] == "in_progress" and batch["webhook"] == PENDING
    assert (await get_json(quiet_api, f"/v1/batches/{batch['id']}"))["webhook"] == PENDING
    jobs = (await get_json(quiet_api, f"/v1/jobs?batch_id={batch['id']}"))["data"]
    hooks = {job["custom_id"]: job["webhook"] for job in jobs}
    assert hooks == {"a": None, "b": PENDING | {"url": own}}


async def test_webhook_secret_without_a_rotation_has_no_previous_secret(api: Api) -> None:
    assert await get_json(api, "/v1/webhook-secret") == {
        "secret": tenant_secret("test-master-secret", "t1"),
        "previous_secret": None,
        "previous_secret_expires_at": None,
    }


@pytest.mark.parametrize("days", [7, -1], ids=["during", "after"])
async def test_webhook_secret_gives_the_previous_secret_while_it_still_signs(days: int) -> None:
    expires = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    rotation = {
        "webhook_signing_secret": "new-master",
        "webhook_signing_secret_previous": "old-master",
        "webhook_signing_secret_previous_expires_at": expires,
    }
    async with running_api(**rotation) as api:
        answer = await get_json(api, "/v1/webhook-secret")
    assert answer["secret"] == tenant_secret("new-master", "t1")
    if days > 0:
        assert answer["previous_secret"] == tenant_secret("old-master", "t1")
        assert datetime.fromisoformat(answer["previous_secret_expires_at"]) == expires
    else:
        assert answer["previous_secret"] is None and answer["previous_secret_expires_at"] is None
