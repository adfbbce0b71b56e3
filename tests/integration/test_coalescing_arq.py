"""Coalescing on the Redis layout: a real arq worker (`Supervisor`, burst mode) runs identical
jobs of one tenant at once, with no result cache to help: one LLM call answers them all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.factory import ServiceFactory, Services
from shared.models import ChatRequest, Completion, JobCreate, JobStatus, Message
from tests.conftest import make_settings
from tests.fakes import FakeLLM
from worker.supervisor import Supervisor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]


class SlowLLM(FakeLLM):
    """Takes a moment to answer, so identical jobs claimed meanwhile find it in flight."""

    async def complete(self, request: ChatRequest) -> Completion:
        await asyncio.sleep(0.3)
        return await super().complete(request)


@pytest.fixture
def llm() -> SlowLLM:
    return SlowLLM()


@pytest.fixture
async def services(
    redis_url: str, redis_db: Any, tmp_path: Path, llm: SlowLLM
) -> AsyncIterator[Services]:
    settings = make_settings(
        queue_backend="arq",
        cache_backend="none",
        redis_url=redis_url,
        sqlite_path=str(tmp_path / "db.sqlite"),
    )
    services = await ServiceFactory(settings, llm=llm).start(consume=False)
    yield services
    await services.close()


def body(prompt: str) -> JobCreate:
    return JobCreate(messages=[Message(role="user", content=prompt)])


async def test_identical_jobs_on_arq_workers_make_one_llm_call(
    services: Services, llm: SlowLLM
) -> None:
    same = [await services.chat.submit("t1", body("the same")) for _ in range(20)]
    other = await services.chat.submit("t2", body("the same"))

    await Supervisor(services.settings, burst=True, services=services).run()

    assert [r.messages[-1].content for r in llm.requests] == ["the same"] * 2  # one per tenant
    jobs = [await services.store.get_job(job.id) for job in [*same, other]]
    assert {job.status for job in jobs if job} == {JobStatus.succeeded}
    assert [job.coalesced for job in jobs if job].count(True) == 19
    (row,) = (await services.usage.report("t1")).data
    assert (row.requests, row.llm_calls, row.coalesced) == (20, 1, 19)
