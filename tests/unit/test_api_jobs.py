"""POST/GET /v1/jobs end to end through the app, with fakes at the ports."""

from __future__ import annotations

import asyncio

import pytest

from api.ratelimit import TenantRateLimiter
from shared.adapters.ratelimit.redis import RedisRateWindow
from shared.models import JobStatus
from tests.unit.conftest import T1, T2, Api, chat, running_api


async def test_submit_queues_then_runs_then_caches(api: Api) -> None:
    first = await api.submit(chat("hello"))
    assert first.status_code == 202
    job_id = first.json()["id"]
    assert first.headers["location"] == f"/v1/jobs/{job_id}"
    assert first.headers["retry-after"] == "1"
    assert first.json()["status"] == "queued"

    assert await api.queue.drain() == 1
    done = (await api.client.get(f"/v1/jobs/{job_id}", headers=T1)).json()
    assert done["status"] == "succeeded" and done["result"]["content"] == "olleh"
    assert done["cached"] is False

    again = await api.submit(chat("hello"))
    assert again.status_code == 200
    assert again.json()["cached"] is True and again.json()["id"] != job_id
    assert again.json()["result"]["content"] == "olleh"
    assert "location" not in again.headers

    uncached = await api.submit(chat("hello", cache=False))
    assert uncached.status_code == 202 and uncached.json()["cached"] is False


async def test_generation_parameters_reach_the_llm_and_the_cache_key(api: Api) -> None:
    options = {
        "top_p": 0.5,
        "stop": "END",
        "seed": 7,
        "response_format": {"type": "json_object"},
    }
    first = await api.submit(chat("hello", **options))
    assert first.status_code == 202, first.text
    await api.queue.drain()
    (sent,) = api.llm.requests
    assert (sent.top_p, sent.stop, sent.seed) == (0.5, ["END"], 7)
    assert sent.response_format is not None and sent.response_format.type == "json_object"
    assert (await api.submit(chat("hello", **options))).json()["cached"] is True
    other_seed = await api.submit(chat("hello", **{**options, "seed": 8}))
    assert other_seed.status_code == 202 and other_seed.json()["cached"] is False


async def test_public_job_hides_internal_fields(api: Api) -> None:
    job = (await api.submit(chat(metadata={"a": "b"}))).json()
    assert job["metadata"] == {"a": "b"} and job["object"] == "job"
    for internal in ("tenant", "request", "cache_key", "idempotency_key", "lease_until"):
        assert internal not in job


async def test_long_poll_returns_once_the_job_finishes(api: Api) -> None:
    job_id = (await api.submit()).json()["id"]
    poll = asyncio.create_task(api.client.get(f"/v1/jobs/{job_id}?wait=10", headers=T1))
    await asyncio.sleep(0.1)
    assert not poll.done()
    await api.queue.drain()
    answer = await asyncio.wait_for(poll, 5)
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"


async def test_long_poll_gives_up_after_wait(api: Api) -> None:
    job_id = (await api.submit()).json()["id"]
    answer = await api.client.get(f"/v1/jobs/{job_id}", params={"wait": 0.2}, headers=T1)
    assert answer.status_code == 200 and answer.json()["status"] == "queued"


async def test_tenants_cannot_see_each_others_jobs(api: Api) -> None:
    job_id = (await api.submit(headers=T1)).json()["id"]
    await api.submit(headers=T2)
    for response in (
        await api.client.get(f"/v1/jobs/{job_id}", headers=T2),
        await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=T2),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    listed = (await api.client.get("/v1/jobs", headers=T2)).json()["data"]
    assert len(listed) == 1 and job_id not in {j["id"] for j in listed}
    assert api.store.jobs[job_id].status is JobStatus.queued


async def test_unknown_job_is_404(api: Api) -> None:
    response = await api.client.get("/v1/jobs/job_nope", headers=T1)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "job_nope was not found"}}


async def test_idempotency_key_replays_or_conflicts(api: Api) -> None:
    key = {"Idempotency-Key": "order-42", **T1}
    first = await api.submit(chat("a"), headers=key)
    replay = await api.submit(chat("a"), headers=key)
    assert first.status_code == replay.status_code == 202
    assert replay.json()["id"] == first.json()["id"]
    assert len(api.store.jobs) == 1 and api.queue.pending == [first.json()["id"]]

    other_body = await api.submit(chat("b"), headers=key)
    assert other_body.status_code == 409
    assert other_body.json()["error"]["code"] == "conflict"

    other_tenant = await api.submit(chat("a"), headers={"Idempotency-Key": "order-42", **T2})
    assert other_tenant.status_code == 202 and other_tenant.json()["id"] != first.json()["id"]


async def test_replay_of_a_finished_job_answers_200(api: Api) -> None:
    key = {"Idempotency-Key": "k", **T1}
    job_id = (await api.submit(chat("a", cache=False), headers=key)).json()["id"]
    await api.queue.drain()
    replay = await api.submit(chat("a", cache=False), headers=key)
    assert replay.status_code == 200
    assert replay.json()["id"] == job_id and replay.json()["status"] == "succeeded"


async def test_cancel_queued_job_then_conflict(api: Api) -> None:
    job_id = (await api.submit()).json()["id"]
    cancelled = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=T1)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=T1)
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]["message"]
    await api.queue.drain()
    assert api.store.jobs[job_id].status is JobStatus.cancelled


async def test_cancel_finished_job_is_409(api: Api) -> None:
    job_id = (await api.submit()).json()["id"]
    await api.queue.drain()
    response = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=T1)
    assert response.status_code == 409


async def test_queue_refusal_is_503_and_job_is_failed(api: Api) -> None:
    api.queue.refuse = True
    response = await api.submit()
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"]["code"] == "queue_unavailable"
    [job] = api.store.jobs.values()
    assert job.status is JobStatus.failed
    assert job.error is not None and job.error.code == "queue_unavailable"


async def test_rate_limit_per_tenant() -> None:
    async with running_api(rate_limit="2/minute") as api:
        assert (await api.submit(chat("1"))).status_code == 202
        assert (await api.submit(chat("2"))).status_code == 202
        limited = await api.submit(chat("3"))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["error"]["code"] == "rate_limited"
        assert len(api.store.jobs) == 2
        assert (await api.submit(chat("4"), headers=T2)).status_code == 202
        assert (await api.client.get("/v1/jobs", headers=T1)).status_code == 200


async def test_rate_limit_fails_open_when_storage_is_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_api(rate_limit="1/minute") as api:
        api.app.state.limiter = TenantRateLimiter(
            "1/minute", RedisRateWindow("redis://127.0.0.1:1")
        )
        for prompt in ("1", "2", "3"):
            assert (await api.submit(chat(prompt))).status_code == 202
    warnings = [r for r in caplog.records if "rate limit storage unreachable" in r.message]
    assert len(warnings) == 1  # logged once, not per request


async def test_list_pages_with_cursor_newest_first(api: Api) -> None:
    ids = [(await api.submit(chat(f"p{i}", cache=False))).json()["id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/jobs", params=params, headers=T1)).json()
        seen += [job["id"] for job in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ids[::-1]


async def test_list_filters_by_status(api: Api) -> None:
    ids = [(await api.submit(chat(f"p{i}"))).json()["id"] for i in range(3)]
    await api.client.post(f"/v1/jobs/{ids[1]}/cancel", headers=T1)
    page = await api.client.get("/v1/jobs", params={"status": "cancelled"}, headers=T1)
    assert [job["id"] for job in page.json()["data"]] == [ids[1]]
    assert page.json()["next_cursor"] is None


async def test_list_rejects_a_bad_cursor(api: Api) -> None:
    response = await api.client.get("/v1/jobs", params={"cursor": "!!!"}, headers=T1)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "cursor"


async def test_healthz_and_readyz(api: Api) -> None:
    health = await api.client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "queue": "ok", "cache": "ok"},
    }


async def test_readyz_names_the_failing_dependency(api: Api) -> None:
    api.queue.refuse = True  # the fake queue then pings False
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["queue"] == "failing" and body["checks"]["store"] == "ok"
    assert body["error"]["code"] == "not_ready" and "queue" in body["error"]["message"]


async def test_metrics_count_requests_and_submissions(api: Api) -> None:
    await api.submit(chat("x"))
    await api.queue.drain()
    await api.submit(chat("x"))
    api.queue.refuse = True
    await api.submit(chat("y"))
    await api.client.get("/v1/jobs/job_nope", headers=T1)
    text = (await api.client.get("/metrics")).text
    assert 'chatjobs_jobs_submitted_total{outcome="queued"} 1.0' in text
    assert 'chatjobs_jobs_submitted_total{outcome="cached"} 1.0' in text
    assert 'chatjobs_jobs_submitted_total{outcome="rejected"} 1.0' in text
    assert 'chatjobs_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="404"' in text
    assert "chatjobs_http_request_duration_seconds_bucket" in text
