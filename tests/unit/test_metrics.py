"""The backlog gauge, and GET /metrics: HTTP, job and backlog metrics of the embedded API."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import Backlog
from shared.models import ChatRequest, Job, JobStatus, Message
from tests.fakes import FakeJobStore
from tests.unit.conftest import T1, Api, chat

REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


async def scrape(api: Api) -> str:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def backlog_on_registry(store: FakeJobStore, max_age_s: float) -> tuple[Backlog, CollectorRegistry]:
    backlog, registry = Backlog(store, max_age_s=max_age_s), CollectorRegistry()
    registry.register(backlog)
    return backlog, registry


async def test_the_backlog_reports_nothing_until_counted() -> None:
    store = FakeJobStore()
    backlog, registry = backlog_on_registry(store, max_age_s=0)
    assert registry.get_sample_value("chatjobs_jobs", {"status": "queued"}) is None
    await store.create_job(Job(tenant="t1", request=REQUEST))
    await store.create_job(Job(tenant="t2", request=REQUEST, status=JobStatus.running))
    await backlog.refresh()
    assert registry.get_sample_value("chatjobs_jobs", {"status": "queued"}) == 1
    assert registry.get_sample_value("chatjobs_jobs", {"status": "running"}) == 1


async def test_the_backlog_reuses_a_recent_count() -> None:
    store = FakeJobStore()
    backlog, registry = backlog_on_registry(store, max_age_s=60)
    await backlog.refresh()
    await store.create_job(Job(tenant="t1", request=REQUEST))
    await backlog.refresh()  # within max_age_s: the store is not asked again
    assert registry.get_sample_value("chatjobs_jobs", {"status": "queued"}) == 0
    backlog.max_age_s = 0
    await backlog.refresh()
    assert registry.get_sample_value("chatjobs_jobs", {"status": "queued"}) == 1


async def test_metrics_show_the_backlog_then_the_jobs_run_in_process(api: Api) -> None:
    api.app.state.services.backlog.max_age_s = 0  # count afresh on every scrape
    for n in range(3):
        assert (await api.submit(chat(f"prompt {n}"))).status_code == 202
    text = await scrape(api)
    assert sample(text, "chatjobs_jobs", status="queued") == 3
    assert sample(text, "chatjobs_jobs", status="running") == 0
    assert sample(text, "chatjobs_jobs_finished_total", status="succeeded", provider="fake") is None

    await api.queue.drain()
    text = await scrape(api)
    assert sample(text, "chatjobs_jobs", status="queued") == 0
    assert sample(text, "chatjobs_jobs_finished_total", status="succeeded", provider="fake") == 3
    assert sample(text, "chatjobs_job_run_seconds_count", outcome="succeeded") == 3
    assert sample(text, "chatjobs_job_retries_total") == 0
    assert sample(text, "chatjobs_jobs_submitted_total", outcome="queued") == 3


async def test_metrics_have_each_family_once(api: Api) -> None:
    await api.submit()
    await api.queue.drain()
    names = [family.name for family in text_string_to_metric_families(await scrape(api))]
    assert len(names) == len(set(names))
    assert {"chatjobs_http_requests", "chatjobs_jobs_finished", "chatjobs_jobs"} <= set(names)


async def test_metrics_leave_the_backlog_out_while_the_store_fails(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> dict[JobStatus, int]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(api.store, "count_unfinished", broken)
    await api.client.get("/healthz")
    text = await scrape(api)  # still answers: the rest is in memory
    assert sample(text, "chatjobs_jobs", status="queued") is None
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert sample(text, "chatjobs_http_requests_total", **healthz) == 1


async def test_submissions_count_batch_jobs_and_not_replays(api: Api) -> None:
    replay = {**T1, "Idempotency-Key": "once"}
    requests = [{"custom_id": f"c{n}", **chat(f"batch prompt {n}")} for n in range(4)]
    for _ in range(2):
        answer = await api.client.post("/v1/batches", json={"requests": requests}, headers=replay)
        assert answer.status_code == 202
    for _ in range(2):
        assert (await api.submit(chat("single"), headers={**T1, "Idempotency-Key": "k"})).is_success

    text = await scrape(api)
    assert sample(text, "chatjobs_jobs_submitted_total", outcome="queued") == 4 + 1
    assert sample(text, "chatjobs_jobs_submitted_total", outcome="replayed") == 4 + 1
