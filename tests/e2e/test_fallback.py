"""Gemini first, OpenRouter as fallback, through the real SDK/HTTP clients of a running API process
(embedded mode keeps it quick: the in-process queue runs the jobs)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Api, Launcher, stub_llm_env
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e

JOBS = 3
LLM_TIMEOUT_S = 1.0
WAIT_S = 30  # bound on every wait: a job must never be left hanging


def start_api(launcher: Launcher, stub: LLMStub, **env: str) -> Api:
    settings = {
        "LLM_TIMEOUT_S": str(LLM_TIMEOUT_S),
        "JOB_MAX_ATTEMPTS": "2",
        "JOB_RETRY_BASE_S": "0.2",
    }
    return launcher.api(**stub_llm_env(stub), **settings, **env)


def run_jobs(api: Api, label: str) -> list[dict[str, Any]]:
    ids = [api.submit(f"{label} {n}")["id"] for n in range(JOBS)]
    finished = api.wait_terminal(ids, timeout=WAIT_S)
    return [finished[job_id] for job_id in ids]


@pytest.mark.parametrize(
    ("gemini", "label"),
    [
        ({"mode": "fail", "status": 500}, "gemini fails"),
        ({"mode": "rate_limit"}, "gemini rate-limits"),
        ({"mode": "stall", "seconds": 3 * LLM_TIMEOUT_S}, "gemini stalls"),
    ],
    ids=["gemini-500", "gemini-429", "gemini-stalls"],
)
def test_transient_gemini_failure_falls_back_to_openrouter(
    launcher: Launcher, llm_stub: LLMStub, gemini: dict[str, Any], label: str
) -> None:
    llm_stub.set("gemini", **gemini)
    api = start_api(launcher, llm_stub)

    for n, job in enumerate(run_jobs(api, label)):
        assert job["status"] == "succeeded", job
        assert job["result"]["provider"] == "openrouter"
        assert job["result"]["content"] == f"openrouter says: {label} {n}"
        assert job["attempts"] == 1
    stats = llm_stub.stats()
    assert 1 <= stats["gemini"] <= JOBS  # tried first (until the circuit breaker opens)
    assert stats["openrouter"] == JOBS


def test_both_providers_failing_fails_the_job_after_bounded_attempts(
    launcher: Launcher, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "fail", status=503)
    llm_stub.set("openrouter", "fail", status=502)
    # Once both circuits open, jobs wait for the probe without spending attempts: keep it short.
    api = start_api(launcher, llm_stub, CIRCUIT_COOLDOWN_S="0.5")

    for job in run_jobs(api, "nobody answers"):
        assert job["status"] == "failed", job
        assert job["attempts"] == 2
        assert job["result"] is None
        assert job["error"]["code"] == "llm_unavailable"
        message = job["error"]["message"]
        assert "gemini" in message and "openrouter" in message, message
    stats = llm_stub.stats()
    # Every attempt fell back once, none beyond the limit; the fallback's own circuit (threshold
    # 5) may have skipped the last call if it came within the cooldown.
    assert 2 * JOBS - 1 <= stats["openrouter"] <= 2 * JOBS
    assert stats["gemini"] <= 2 * JOBS


def test_permanent_gemini_refusal_fails_fast_without_fallback(
    launcher: Launcher, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "block")
    api = start_api(launcher, llm_stub)

    for job in run_jobs(api, "refused"):
        assert job["status"] == "failed", job
        assert job["attempts"] == 1
        assert job["error"]["code"] == "llm_rejected"
        assert "gemini" in job["error"]["message"]
    assert llm_stub.stats() == {"gemini": JOBS, "openrouter": 0}
