"""Redis mode: one API and two `python -m worker` processes on arq; a worker is SIGKILLed mid-run.

Timing (worker/arq_options.py) with LLM_TIMEOUT_S=2: the executor's job timeout T = 2*2+5 = 9 s,
arq's job_timeout = T+5 = 14 s, and arq's in-progress key of a job lives job_timeout+10 = 24 s. A
job whose worker was killed is therefore taken again by the other worker about 24 s after it
started, when its store lease (claim + T + 5 = 14 s) has long run out. Measured on 2 cores: the
interrupted jobs succeed 24-25 s after the SIGKILL (the test prints it).
"""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from tests.e2e import procs
from tests.e2e.conftest import Launcher, stub_llm_env
from tests.e2e.services import flush_redis
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e

JOBS = 200
LLM_CALL_S = 0.3  # each stub answer takes this long, so the work spreads over both workers
CONCURRENCY = 8
RECOVERY_BOUND_S = 90
# arq logs "  0.01s → job_<hex>:run_job('job_<hex>')" when it starts a job
STARTED = re.compile(r"→ (job_[0-9a-f]+):run_job\(")
FINISHED = re.compile(r"← (job_[0-9a-f]+):run_job ●")


def started_jobs(proc: procs.Proc) -> set[str]:
    return set(STARTED.findall(proc.log()))


def test_jobs_survive_a_killed_worker(
    launcher: Launcher, llm_stub: LLMStub, redis_url: str
) -> None:
    flush_redis(redis_url)
    llm_stub.set("gemini", "stall", seconds=LLM_CALL_S)
    env = stub_llm_env(llm_stub) | {
        "REDIS_URL": redis_url,
        "LLM_TIMEOUT_S": "2",
        "WORKER_CONCURRENCY": str(CONCURRENCY),
    }
    api = launcher.api(**env)
    victim = launcher.worker("worker-victim", **env)
    survivor = launcher.worker("worker-survivor", **env)

    prompts = [f"spread {n}" for n in range(JOBS)]
    with ThreadPoolExecutor(8) as pool:
        submitted = list(pool.map(api.submit, prompts))
    assert {job["status"] for job in submitted} <= {"queued", "running"}
    job_ids = [job["id"] for job in submitted]

    def victim_is_running_jobs() -> bool:
        """arq has started jobs on the victim, and the store says they are claimed (running)."""
        log = victim.log()
        in_hand = set(STARTED.findall(log)) - set(FINISHED.findall(log))
        if not in_hand:
            return False
        running = api.http.get("/v1/jobs", params={"status": "running", "limit": 100})
        return bool(in_hand & {job["id"] for job in running.json()["data"]})

    assert procs.wait_for(victim_is_running_jobs, timeout=20, interval=0.01), victim.log()[-3000:]
    victim.kill(signal.SIGKILL)
    killed_at = time.time()
    assert victim.popen.wait(10) == -signal.SIGKILL

    finished = api.wait_terminal(job_ids, timeout=RECOVERY_BOUND_S)
    all_done_s = time.time() - killed_at

    jobs = [finished[job_id] for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * JOBS
    for prompt, job in zip(prompts, jobs, strict=True):
        assert job["result"]["content"] == f"gemini says: {prompt}"
        assert job["result"]["provider"] == "gemini"
        assert job["attempts"] >= 1

    # Both workers ran jobs; the jobs that were run twice are the ones the victim had in hand.
    by_victim, by_survivor = started_jobs(victim), started_jobs(survivor)
    assert by_victim and by_survivor
    assert by_victim | by_survivor == set(job_ids)  # the API (QUEUE_BACKEND=arq) ran none itself
    rerun = {job["id"] for job in jobs if job["attempts"] > 1}
    assert rerun, "the victim had jobs in hand when it was killed: they must have been run again"
    assert rerun <= by_victim & by_survivor

    # Each job succeeded once: one LLM call per attempt (a killed attempt may have died before
    # calling), never a call beyond that; nothing needed the fallback.
    stats = llm_stub.stats()
    total_attempts = sum(job["attempts"] for job in jobs)
    assert JOBS <= stats["gemini"] <= total_attempts <= JOBS + CONCURRENCY
    assert stats["openrouter"] == 0

    recovered_s = max(completed_at(finished[job_id]) for job_id in rerun) - killed_at
    print(
        f"\nworkers started {len(by_victim)} (killed) and {len(by_survivor)} (survivor) jobs; "
        f"recovery after SIGKILL: {len(rerun)} interrupted jobs succeeded on the other worker "
        f"{recovered_s:.1f} s after the kill; all {JOBS} jobs done {all_done_s:.1f} s after it"
    )
    assert recovered_s < RECOVERY_BOUND_S


def completed_at(job: dict[str, str]) -> float:
    return datetime.fromisoformat(job["completed_at"]).timestamp()
