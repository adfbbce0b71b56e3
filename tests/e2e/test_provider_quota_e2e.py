"""Provider quotas shared by every worker (docs/adr/0014), with four `python -m worker` processes
on arq and the stub LLM server recording when each call arrives and which worker sent it (each
worker has its own GEMINI_API_KEY).

- GEMINI_RPM=120 and OPENROUTER_RPM=30, 200 jobs at once: 120 go to Gemini, 30 overflow to
  OpenRouter, the other 50 wait (queued, no attempt spent) until Gemini's first slots free a
  minute later. No 60 s window at the stub holds more than either quota; every job succeeds.
- A stub 429 with `Retry-After: 5`: no Gemini call from any of the four workers for 5 s, and
  every worker waited (its own /metrics counts quota waits).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e import procs
from tests.e2e.conftest import Launcher, stub_llm_env
from tests.e2e.services import flush_redis
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e

WORKERS = 4
GEMINI_RPM, OPENROUTER_RPM = 120, 30
JOBS = 200
PAUSE_S = 5
MINUTE_S = 60.0


def start_workers(launcher: Launcher, env: dict[str, str]) -> list[tuple[procs.Proc, int]]:
    """Four workers, each with its own Gemini key (the stub tells them apart) and metrics port."""
    workers = []
    for n in range(WORKERS):
        port = procs.free_port()
        own = env | {"GEMINI_API_KEY": f"worker-{n}", "WORKER_METRICS_PORT": str(port)}
        workers.append((launcher.worker(f"worker-{n}", **own), port))
    return workers


def most_in_a_minute(times: list[float]) -> int:
    """The most calls any 60 s window holds (windows starting at each call are enough)."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if s <= t < s + MINUTE_S) for s in ordered), default=0)


def quota_waits(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('chatjobs_provider_quota_waits_total{provider="gemini"}')
    )


def submit_all(api: Any, prompts: list[str]) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return [job["id"] for job in pool.map(api.submit, prompts)]


def test_the_quota_holds_across_four_workers_and_every_job_succeeds(
    launcher: Launcher, llm_stub: LLMStub, redis_url: str
) -> None:
    flush_redis(redis_url)
    env = stub_llm_env(llm_stub) | {
        "REDIS_URL": redis_url,
        "WORKER_CONCURRENCY": "8",
        "GEMINI_RPM": str(GEMINI_RPM),
        "OPENROUTER_RPM": str(OPENROUTER_RPM),
    }
    api = launcher.api(**env)
    workers = start_workers(launcher, env)

    job_ids = submit_all(api, [f"quota {n}" for n in range(JOBS)])
    finished = api.wait_terminal(job_ids, timeout=110)

    jobs = [finished[job_id] for job_id in job_ids]
    assert [job["status"] for job in jobs] == ["succeeded"] * JOBS
    assert {job["attempts"] for job in jobs} == {1}  # waiting spent no attempt
    gemini, openrouter = llm_stub.arrivals("gemini"), llm_stub.arrivals("openrouter")
    assert len(gemini) + len(openrouter) == JOBS  # one call a job: none refused or failed
    gemini_most = most_in_a_minute([at for at, _ in gemini])
    openrouter_most = most_in_a_minute([at for at, _ in openrouter])
    assert gemini_most <= GEMINI_RPM
    assert openrouter_most <= OPENROUTER_RPM
    assert {key for _, key in gemini} == {f"worker-{n}" for n in range(WORKERS)}

    first_call = min(at for at, _ in gemini + openrouter)
    waited = [job for job in jobs if completed_at(job) - first_call >= MINUTE_S]
    assert len(waited) >= JOBS - GEMINI_RPM - OPENROUTER_RPM  # the jobs beyond both quotas
    assert sum(quota_waits(port) for _, port in workers) >= len(waited)
    per_second: dict[int, int] = {}
    for at, _ in gemini:
        per_second[int(at - first_call)] = per_second.get(int(at - first_call), 0) + 1
    print(
        f"\n{len(gemini)} Gemini and {len(openrouter)} OpenRouter calls for {JOBS} jobs; most in "
        f"any 60 s window: Gemini {gemini_most} (quota {GEMINI_RPM}), OpenRouter "
        f"{openrouter_most} (quota {OPENROUTER_RPM}); {len(waited)} jobs waited a minute; "
        f"Gemini calls per second from the first call: {dict(sorted(per_second.items()))}; "
        f"last job done {max(map(completed_at, jobs)) - first_call:.1f} s after the first call"
    )


def test_a_429_with_retry_after_pauses_every_worker(
    launcher: Launcher, llm_stub: LLMStub, redis_url: str
) -> None:
    flush_redis(redis_url)
    llm_stub.set("gemini", "rate_limit", retry_after=PAUSE_S, times=1)
    env = stub_llm_env(llm_stub, openrouter=False) | {
        "REDIS_URL": redis_url,
        "WORKER_CONCURRENCY": "4",
    }
    api = launcher.api(**env)
    workers = start_workers(launcher, env)

    first = api.submit("the one that meets the 429")["id"]
    assert procs.wait_for(lambda: llm_stub.stats()["gemini"] >= 1, timeout=30, interval=0.01)
    job_ids = [first, *submit_all(api, [f"pause {n}" for n in range(80)])]
    finished = api.wait_terminal(job_ids, timeout=90)

    assert {finished[job_id]["status"] for job_id in job_ids} == {"succeeded"}
    calls = llm_stub.arrivals("gemini")
    rate_limited_at = calls[0][0]
    next_call_at = calls[1][0]
    gap = next_call_at - rate_limited_at
    assert gap >= PAUSE_S - 0.01, f"a Gemini call came {gap:.2f} s after the 429"
    assert len(calls) == len(job_ids) + 1  # the 429'd call, then one call a job
    assert finished[first]["attempts"] == 2  # its call was made (and refused)
    assert {finished[job_id]["attempts"] for job_id in job_ids[1:]} == {1}
    waits = [quota_waits(port) for _, port in workers]
    assert all(count > 0 for count in waits), waits  # all four held back, not only one
    print(
        f"\n429 with Retry-After: {PAUSE_S} at the stub; next Gemini call {gap:.2f} s later; "
        f"quota waits per worker during the pause: {waits}; "
        f"{len({key for _, key in calls[1:]})} workers called Gemini after it"
    )


def completed_at(job: dict[str, Any]) -> float:
    return datetime.fromisoformat(job["completed_at"]).timestamp()
