"""POST /v1/batches/{id}/retry-failed: a batch's failed jobs run again, the batch reopens, and
`batch.completed` goes out again when it next completes."""

from __future__ import annotations

import functools
from typing import Any

from shared.errors import PermanentLLMError, TransientLLMError
from shared.models import JobStatus, utcnow
from shared.usage import UsageCounters
from tests.unit.conftest import T1, T2, Api, chat, running_api

HOOK = "http://127.0.0.1:9/hook"
QUIET = {"webhook_retry_schedule": "3600"}  # deliveries scheduled an hour out: none is sent


def body(n: int, **extra: Any) -> dict[str, Any]:
    return {"requests": [{"custom_id": f"c{i}", **chat(f"p {i}")} for i in range(n)], **extra}


async def post(api: Api, path: str, headers: dict[str, str] = T1) -> Any:
    return await api.client.post(path, headers=headers)


async def failed_batch(api: Api, n: int = 3, failing: int = 2) -> dict[str, Any]:
    """A completed batch of `n` jobs whose first `failing` were refused by the LLM."""
    response = await api.client.post("/v1/batches", json=body(n, webhook_url=HOOK), headers=T1)
    assert response.status_code == 202, response.text
    api.llm.errors = [PermanentLLMError("refused", provider="fake") for _ in range(failing)]
    await api.queue.drain()
    batch: dict[str, Any] = (await api.client.get(response.headers["location"], headers=T1)).json()
    assert batch["status"] == "completed" and batch["counts"]["failed"] == failing
    return batch


async def test_failed_jobs_run_again_and_the_batch_completes_again() -> None:
    async with running_api(**QUIET) as api:
        batch = await failed_batch(api)
        first_event = batch["webhook"]["id"]
        assert first_event is not None

        response = await post(api, f"/v1/batches/{batch['id']}/retry-failed")
        assert response.status_code == 200, response.text
        reopened = response.json()
        assert reopened["status"] == "in_progress" and reopened["completed_at"] is None
        assert reopened["counts"] == {
            "total": 3, "queued": 2, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0
        }  # fmt: skip
        assert reopened["webhook"] == {**reopened["webhook"], "state": "pending", "id": None}
        retried = [j for j in api.store.jobs.values() if j.status is JobStatus.queued]
        assert sorted(api.queue.pending) == sorted(j.id for j in retried)
        for job in retried:
            assert (job.attempts, job.error, job.completed_at) == (0, None, None)
            assert job.retried_at is not None

        await api.queue.drain()
        done = (await api.client.get(f"/v1/batches/{batch['id']}", headers=T1)).json()
        assert done["status"] == "completed" and done["counts"]["succeeded"] == 3
        assert done["webhook"]["state"] == "pending" and done["webhook"]["id"] != first_event
        assert all(j.attempts == 1 for j in api.store.jobs.values())


async def test_usage_counts_each_run_once_and_no_call_twice() -> None:
    async with running_api(**QUIET) as api:
        batch = await failed_batch(api)
        await post(api, f"/v1/batches/{batch['id']}/retry-failed")
        await api.queue.drain()
        today = utcnow().date()
        first, *rest = await api.store.usage("t1", today, today)  # "fake" and "none"
        total = functools.reduce(UsageCounters.plus, rest, first)
        # 3 runs that answered + 2 that failed; one LLM call each, none counted twice
        assert (total.requests, total.succeeded, total.failed, total.llm_calls) == (5, 3, 2, 5)
        assert total.failed_by_code == {"llm_rejected": 2}


async def test_a_retried_job_gets_a_whole_retry_budget_again() -> None:
    """An old job would have no budget left (it counts from creation): the retry's counts from
    when it was queued again, so a transient failure is retried, not failed at once."""
    async with running_api(**QUIET, job_retry_budget_s=60) as api:
        batch = await failed_batch(api, n=1, failing=1)
        (job,) = api.store.jobs.values()
        old = job.created_at.replace(year=job.created_at.year - 1)
        api.store.jobs[job.id] = job.model_copy(update={"created_at": old})
        await post(api, f"/v1/batches/{batch['id']}/retry-failed")
        api.llm.errors = [TransientLLMError("busy", provider="fake")]
        await api.app.state.services.executor.run(job.id)
        again = api.store.jobs[job.id]
        assert again.status is JobStatus.queued and again.error is not None
        assert again.error.code == "retrying"


async def test_a_batch_without_failed_jobs_is_answered_unchanged(api: Api) -> None:
    response = await api.client.post("/v1/batches", json=body(2), headers=T1)
    batch_id = response.json()["id"]
    before = response.json()
    again = await post(api, f"/v1/batches/{batch_id}/retry-failed")
    assert again.status_code == 200 and again.json() == before
    assert len(api.queue.pending) == 2  # nothing enqueued twice


async def test_a_cancelled_batch_is_a_conflict_and_others_tenants_batches_are_404(
    api: Api,
) -> None:
    batch_id = (await api.client.post("/v1/batches", json=body(2), headers=T1)).json()["id"]
    assert (await post(api, f"/v1/batches/{batch_id}/retry-failed", T2)).status_code == 404
    assert (await post(api, "/v1/batches/batch_nope/retry-failed")).status_code == 404
    await post(api, f"/v1/batches/{batch_id}/cancel")
    refused = await post(api, f"/v1/batches/{batch_id}/retry-failed")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conflict"


async def test_past_max_queued_jobs_nothing_is_retried() -> None:
    async with running_api(**QUIET, max_queued_jobs=2) as api:
        batch = await failed_batch(api, n=2, failing=2)
        await api.submit(chat("fills the backlog"))
        refused = await post(api, f"/v1/batches/{batch['id']}/retry-failed")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        stored = api.store.batches[batch["id"]]
        assert stored.status == "completed" and stored.counts.failed == 2
