"""DELETE /v1/jobs/{id}: a finished job and its result are erased, with its cached answer; usage
counters stay."""

from __future__ import annotations

from shared.service import cache_key
from tests.unit.conftest import T1, T2, Api, chat


async def finished_job(api: Api, prompt: str = "erase me") -> str:
    job_id: str = (await api.submit(chat(prompt))).json()["id"]
    await api.queue.drain()
    return job_id


async def test_a_finished_job_is_erased_with_its_result_and_cached_answer(api: Api) -> None:
    job_id = await finished_job(api)
    stored = api.store.jobs[job_id]
    assert stored.cache_key in api.cache.entries
    today = stored.completed_at.date() if stored.completed_at else None
    assert today is not None
    usage = await api.store.usage("t1", today, today)

    response = await api.client.delete(f"/v1/jobs/{job_id}", headers=T1)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert job_id not in api.store.jobs and stored.cache_key not in api.cache.entries
    assert (await api.client.get(f"/v1/jobs/{job_id}", headers=T1)).status_code == 404
    listed = (await api.client.get("/v1/jobs", headers=T1)).json()["data"]
    assert job_id not in [job["id"] for job in listed]
    assert await api.store.usage("t1", today, today) == usage  # counters are kept
    again = await api.submit(chat("erase me"))  # the answer is gone from the cache too
    assert again.status_code == 202 and again.json()["cached"] is False
    assert (await api.client.delete(f"/v1/jobs/{job_id}", headers=T1)).status_code == 404


async def test_another_tenants_cache_entry_for_the_same_prompt_stays(api: Api) -> None:
    mine = await finished_job(api, "shared words")
    theirs = (await api.submit(chat("shared words"), headers=T2)).json()["id"]
    await api.queue.drain()
    request = api.store.jobs[theirs].request
    assert (await api.client.delete(f"/v1/jobs/{mine}", headers=T1)).status_code == 204
    assert cache_key("t2", request) in api.cache.entries
    assert theirs in api.store.jobs


async def test_another_tenants_or_an_unknown_job_is_404(api: Api) -> None:
    job_id = await finished_job(api)
    response = await api.client.delete(f"/v1/jobs/{job_id}", headers=T2)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert job_id in api.store.jobs
    assert (await api.client.delete("/v1/jobs/job_nope", headers=T1)).status_code == 404
    assert (await api.client.delete(f"/v1/jobs/{job_id}")).status_code == 401


async def test_a_queued_job_must_be_cancelled_first(api: Api) -> None:
    job_id = (await api.submit(chat("still waiting"))).json()["id"]
    refused = await api.client.delete(f"/v1/jobs/{job_id}", headers=T1)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["message"] == "job is queued: cancel it before deleting it"
    assert job_id in api.store.jobs
    await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=T1)
    assert (await api.client.delete(f"/v1/jobs/{job_id}", headers=T1)).status_code == 204


async def test_a_deleted_batch_job_leaves_the_batch_counts_and_its_other_results(
    api: Api,
) -> None:
    body = {"requests": [{"custom_id": c, **chat(f"p {c}")} for c in ("a", "b")]}
    batch = (await api.client.post("/v1/batches", json=body, headers=T1)).json()
    await api.queue.drain()
    first = next(j for j in api.store.jobs.values() if j.custom_id == "a")
    assert (await api.client.delete(f"/v1/jobs/{first.id}", headers=T1)).status_code == 204
    after = (await api.client.get(f"/v1/batches/{batch['id']}", headers=T1)).json()
    assert after["status"] == "completed" and after["counts"]["succeeded"] == 2
    lines = (await api.client.get(f"/v1/batches/{batch['id']}/results", headers=T1)).text
    assert [line for line in lines.splitlines() if '"a"' in line] == []
