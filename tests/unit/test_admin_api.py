"""/v1/admin over fakes: only admin keys get in; the operator sees and acts on every tenant's jobs,
batches and webhooks, through the same rules tenants meet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.errors import TransientLLMError
from shared.models import JobStatus, WebhookDelivery, WebhookState, utcnow
from tests.unit.conftest import T1, T2, Api, chat, running_api

ADMIN = {"Authorization": "Bearer admin-key"}
DEAD_LETTERS = "/v1/admin/dead-letters"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with running_api(admin_api_keys="admin-key,second-admin") as running:
        yield running


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401), (T1, 403), (ADMIN, 200)],
)
async def test_only_admin_keys_open_the_admin_api(
    api: Api, headers: dict[str, str], status: int
) -> None:
    for path in ("/v1/admin/jobs", "/v1/admin/overview", "/v1/admin/batches", DEAD_LETTERS):
        response = await api.client.get(path, headers=headers)
        assert response.status_code == status, (path, response.text)
        if status == 403:
            assert response.json()["error"]["code"] == "forbidden"


async def test_no_admin_keys_configured_means_nobody_is_an_operator() -> None:
    async with running_api() as api:
        assert (await api.client.get("/v1/admin/jobs", headers=ADMIN)).status_code == 401
        assert (await api.client.get("/v1/admin/jobs", headers=T1)).status_code == 403


async def test_an_admin_key_cannot_be_a_tenant_key() -> None:
    with pytest.raises(ValueError, match="ADMIN_API_KEYS"):
        async with running_api(admin_api_keys="k1"):
            pass


async def test_every_tenants_jobs_with_filters_and_cursor(api: Api) -> None:
    mine = [(await api.submit(chat(f"t1 {i}"))).json()["id"] for i in range(3)]
    theirs = (await api.submit(chat("t2"), headers=T2)).json()["id"]
    listed, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/v1/admin/jobs", params=params, headers=ADMIN)).json()
        listed += [(job["id"], job["tenant"]) for job in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == [(theirs, "t2"), *[(j, "t1") for j in reversed(mine)]]
    only = await api.client.get("/v1/admin/jobs", params={"tenant": "t2"}, headers=ADMIN)
    assert [j["id"] for j in only.json()["data"]] == [theirs]
    later = (utcnow() + timedelta(minutes=1)).isoformat()
    empty = await api.client.get("/v1/admin/jobs", params={"created_from": later}, headers=ADMIN)
    assert empty.json()["data"] == []
    bad = await api.client.get("/v1/admin/jobs", params={"cursor": "bm9wZQ=="}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"


async def test_cancel_and_retry_any_tenants_job(api: Api) -> None:
    job_id = (await api.submit(chat("to cancel"), headers=T2)).json()["id"]
    cancelled = await api.client.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await api.client.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    assert again.status_code == 409
    assert (
        await api.client.post(f"/v1/admin/jobs/{job_id}/retry", headers=ADMIN)
    ).status_code == 409

    failed_id = (await api.submit(chat("to fail"))).json()["id"]
    failed = api.store.jobs[failed_id].model_copy(
        update={"status": JobStatus.failed, "completed_at": utcnow(), "attempts": 3}
    )
    api.store.jobs[failed_id] = failed
    retried = await api.client.post(f"/v1/admin/jobs/{failed_id}/retry", headers=ADMIN)
    assert retried.status_code == 200
    assert (retried.json()["status"], retried.json()["attempts"]) == ("queued", 0)
    assert api.queue.pending.count(failed_id) == 2  # submitted, then retried
    missing = await api.client.post("/v1/admin/jobs/job_nope/cancel", headers=ADMIN)
    assert missing.status_code == 404


async def run_until_settled(api: Api, job_id: str, deliveries: int = 10) -> None:
    """Deliver the job as a consumer would, again after each delay it asks for (bounded)."""
    executor = api.app.state.services.executor
    for _ in range(deliveries):
        delay = await executor.run(job_id)
        if delay is None:
            return
        await asyncio.sleep(delay)
    raise AssertionError(f"{job_id} still wants another delivery after {deliveries}")


async def test_the_job_detail_lists_each_attempt_that_did_not_succeed() -> None:
    fast_retries = {"job_retry_base_s": 0.01, "job_retry_max_delay_s": 0.01}
    async with running_api(admin_api_keys="admin-key", **fast_retries) as api:
        api.llm.errors = [
            TransientLLMError("HTTP 503 overloaded", provider="gemini", status_code=503),
            TransientLLMError("connection refused", provider="openrouter"),
        ]
        job_id = (await api.submit(chat("flaky"))).json()["id"]
        await run_until_settled(api, job_id)
        detail = (await api.client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN)).json()
        public = (await api.client.get(f"/v1/jobs/{job_id}", headers=T1)).json()
    assert (detail["status"], detail["attempts"]) == ("succeeded", 3)
    log = detail["attempt_log"]
    assert [(a["attempt"], a["outcome"], a["provider"], a["code"]) for a in log] == [
        (1, "retrying", "gemini", "http_503"),
        (2, "retrying", "openrouter", "provider_error"),
    ]
    assert log[0]["message"] == "HTTP 503 overloaded"
    assert all(a["started_at"] <= a["ended_at"] for a in log)
    assert log[0]["ended_at"] <= log[1]["started_at"] <= detail["completed_at"]
    assert "attempt_log" not in public  # the tenant's view is the public contract


async def test_batch_cancel_and_results(api: Api) -> None:
    body = {"requests": [{"custom_id": f"r{i}", **chat(f"b{i}")} for i in range(3)]}
    batch = (await api.client.post("/v1/batches", json=body, headers=T2)).json()
    listed = (await api.client.get("/v1/admin/batches", headers=ADMIN)).json()["data"]
    assert [(b["id"], b["tenant"]) for b in listed] == [(batch["id"], "t2")]
    cancelled = await api.client.post(f"/v1/admin/batches/{batch['id']}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200
    assert cancelled.json()["counts"]["cancelled"] == 3
    results = await api.client.get(f"/v1/admin/batches/{batch['id']}/results", headers=ADMIN)
    assert len([line for line in results.text.splitlines() if line]) == 3


async def test_failing_webhooks_are_listed_and_replayed(api: Api) -> None:
    job_id = (await api.submit(chat("hooked", webhook_url="http://127.0.0.1:9/x"))).json()["id"]
    gave_up = WebhookDelivery(
        id="msg_1",
        state=WebhookState.failed,
        attempts=8,
        last_status_code=500,
        last_error="HTTP 500",
    )
    api.store.jobs[job_id] = api.store.jobs[job_id].model_copy(
        update={"status": JobStatus.succeeded, "completed_at": utcnow(), "webhook": gave_up}
    )
    failing = (await api.client.get("/v1/admin/webhooks/failing", headers=ADMIN)).json()["data"]
    assert [(f["subject_id"], f["last_status_code"], f["state"]) for f in failing] == [
        (job_id, 500, "failed")
    ]
    replayed = await api.client.post(f"/v1/admin/webhooks/{job_id}/redeliver", headers=ADMIN)
    assert replayed.status_code == 200
    hook = api.store.jobs[job_id].webhook
    assert hook is not None and hook.state is WebhookState.pending and hook.id == "msg_1"
    queued = (await api.submit(chat("not ended", webhook_url="http://127.0.0.1:9/y"))).json()
    not_ended = await api.client.post(f"/v1/admin/webhooks/{queued['id']}/redeliver", headers=ADMIN)
    assert not_ended.status_code == 409


async def test_overview_counts_the_backlog_and_the_last_hour(api: Api) -> None:
    for i in range(3):
        await api.submit(chat(f"q{i}"))
    overview = (await api.client.get("/v1/admin/overview", headers=ADMIN)).json()
    assert overview["backlog"]["singles"]["queued"] == 3
    assert overview["last_hour"]["jobs"] == 3
    assert overview["backlog"]["oldest_queued_age_s"] >= 0


async def test_usage_per_tenant_and_in_total(api: Api) -> None:
    usage = (await api.client.get("/v1/admin/usage", headers=ADMIN)).json()
    assert [t["tenant"] for t in usage["tenants"]] == ["t1", "t2"]
    assert usage["group_by"] == "day"


async def test_the_embedded_layout_has_no_dead_letter_queues(api: Api) -> None:
    report = (await api.client.get(DEAD_LETTERS, headers=ADMIN)).json()
    assert report["has_dead_letter_queues"] is False and report["data"] == []
    assert "status=failed" in report["note"]
    redrive = await api.client.post(f"{DEAD_LETTERS}/jobs/redrive", headers=ADMIN)
    assert redrive.status_code == 404, redrive.text
    assert redrive.json()["error"]["fields"][0]["field"] == "queue"


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (T1, 403)])
async def test_only_admin_keys_redrive(api: Api, headers: dict[str, str], status: int) -> None:
    response = await api.client.post(f"{DEAD_LETTERS}/jobs/redrive", headers=headers)
    assert response.status_code == status, response.text
