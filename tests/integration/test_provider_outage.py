"""Both providers down for a while, under load, with the default retry settings: every accepted
job succeeds once they are back. The defaults are an outage budget of 900 s against the 60 s
outage the issue names; here both are shrunk by the same factor (and with them the backoff and
circuit cooldown), so the ratio of outage to budget is the default one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.config import Settings
from shared.factory import ServiceFactory
from shared.models import JobCreate, JobStatus, Message
from tests.conftest import make_settings
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration

DEFAULTS = Settings(_env_file=None)
OUTAGE_S = 60.0  # the outage, at the default settings
SCALE = 4.0 / OUTAGE_S  # run it as a 4 s outage, and shrink every retry setting alike
JOBS = 40


def scaled_settings(tmp_path: Path, stub: LLMStub) -> Settings:
    return make_settings(
        sqlite_path=str(tmp_path / "chatjobs.db"),
        gemini_api_key="stub-key",
        gemini_base_url=stub.gemini_base_url,
        openrouter_api_key="stub-key",
        openrouter_base_url=stub.openrouter_base_url,
        llm_timeout_s=2,
        job_retry_budget_s=DEFAULTS.job_retry_budget_s * SCALE,
        job_retry_base_s=DEFAULTS.job_retry_base_s * SCALE,
        job_retry_max_delay_s=DEFAULTS.job_retry_max_delay_s * SCALE,
        job_max_attempts=DEFAULTS.job_max_attempts,
        circuit_failure_threshold=DEFAULTS.circuit_failure_threshold,
        circuit_cooldown_s=DEFAULTS.circuit_cooldown_s * SCALE,
        worker_concurrency=8,
    )


async def test_every_job_accepted_during_an_outage_of_both_providers_succeeds(
    tmp_path: Path, llm_stub: LLMStub
) -> None:
    llm_stub.set("gemini", "fail", status=503)
    llm_stub.set("openrouter", "fail", status=502)
    services = await ServiceFactory(scaled_settings(tmp_path, llm_stub)).start(consume=True)
    try:
        started = time.monotonic()
        ids: list[str] = []
        while time.monotonic() - started < OUTAGE_S * SCALE:  # load through the outage
            body = JobCreate(messages=[Message(role="user", content=f"q{len(ids)}")])
            ids.append((await services.chat.submit("t1", body)).id)
            await asyncio.sleep(OUTAGE_S * SCALE / JOBS)
        llm_stub.set("gemini", "ok")
        llm_stub.set("openrouter", "ok")
        budget_s = DEFAULTS.job_retry_budget_s * SCALE
        jobs = [await services.chat.get("t1", job_id, wait_s=budget_s) for job_id in ids]
    finally:
        await services.close()
    assert len(ids) >= JOBS // 2
    statuses = {job.status for job in jobs}
    assert statuses == {JobStatus.succeeded}, [(j.id, j.status, j.error) for j in jobs[:3]]
    # Attempts were not spent while both circuits were open: far fewer than the guard allows.
    assert max(job.attempts for job in jobs) < DEFAULTS.job_max_attempts
