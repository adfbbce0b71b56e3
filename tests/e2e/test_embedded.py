"""Embedded mode: `python -m api` alone (in-process queue, SQLite, memory cache), no config."""

from __future__ import annotations

import signal

import pytest

from tests.e2e import procs
from tests.e2e.conftest import Launcher, stub_llm_env
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e


def test_submit_poll_cache_and_restart(launcher: Launcher) -> None:
    api = launcher.api()  # no API_KEYS, no REDIS_URL, no LLM keys: anonymous tenant, offline LLM

    response = api.http.post(
        "/v1/jobs", json={"messages": [{"role": "user", "content": "hello e2e"}]}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert "Retry-After" in response.headers

    done = api.wait_terminal([job["id"]], timeout=20)[job["id"]]
    assert done["status"] == "succeeded", done
    assert done["result"]["provider"] == "offline"
    assert done["result"]["content"]
    assert done["cached"] is False and done["attempts"] == 1

    again = api.http.post("/v1/jobs", json={"messages": [{"role": "user", "content": "hello e2e"}]})
    assert again.status_code == 200, again.text
    hit = again.json()
    assert hit["cached"] is True and hit["status"] == "succeeded"
    assert hit["id"] != job["id"]  # a cache hit is still recorded as its own job
    assert hit["result"]["content"] == done["result"]["content"]

    # SIGTERM: uvicorn shuts down cleanly, then re-raises the signal (so the exit code says it)
    assert api.proc.stop(timeout=20) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in api.proc.log()
    restarted = launcher.restart(api, "api-restarted")

    for job_id in (job["id"], hit["id"]):
        kept = restarted.job(job_id)
        assert kept["status"] == "succeeded"
        assert kept["result"]["content"] == done["result"]["content"]
    listed = restarted.http.get("/v1/jobs", params={"limit": 10}).json()
    assert [j["id"] for j in listed["data"]] == [hit["id"], job["id"]]  # newest first


def test_jobs_of_a_killed_api_are_run_after_restart(launcher: Launcher, llm_stub: LLMStub) -> None:
    llm_stub.set("gemini", "stall", seconds=20)  # far beyond the time to the kill
    env = stub_llm_env(llm_stub, openrouter=False) | {"LLM_TIMEOUT_S": "3"}
    api = launcher.api(**env)

    job_ids = [api.submit(f"interrupted {n}")["id"] for n in range(5)]
    assert procs.wait_for(
        lambda: llm_stub.stats()["gemini"] >= len(job_ids), timeout=15, interval=0.02
    )
    assert {api.job(job_id)["status"] for job_id in job_ids} == {"running"}
    api.proc.kill(signal.SIGKILL)
    assert api.proc.popen.wait(10) == -signal.SIGKILL

    llm_stub.set("gemini", "ok")
    restarted = launcher.restart(api, "api-restarted")
    finished = restarted.wait_terminal(job_ids, timeout=30)

    for n, job_id in enumerate(job_ids):
        job = finished[job_id]
        assert job["status"] == "succeeded", job
        assert job["result"]["provider"] == "gemini"
        assert job["result"]["content"] == f"gemini says: interrupted {n}"
        assert job["attempts"] == 2  # the killed attempt, then the one after the restart
    assert "re-enqueueing 5 unfinished jobs" in restarted.proc.log()
    assert llm_stub.stats()["gemini"] == 2 * len(job_ids)
