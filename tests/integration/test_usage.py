"""Usage counters after a mixed run through the real services: ChatService, BatchService and the
JobExecutor on the in-process queue, a real store (SQLite, or DynamoDB on moto), the memory cache,
and FallbackLLM over two scripted providers. Every figure of GET /v1/usage's report must equal the
one computed from listing the tenant's jobs, for every grouping, and each tenant sees only its own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.llm.circuit import CircuitBreaker
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.errors import PermanentLLMError, TransientLLMError
from shared.factory import ServiceFactory, Services
from shared.models import (
    BatchItem,
    BatchStatus,
    ChatRequest,
    Completion,
    Job,
    JobCreate,
    JobStatus,
    Usage,
    utcnow,
)
from shared.ports import Store
from shared.usage import BUCKET_MS, latency_bucket
from shared.usage_report import NO_KEY, GroupBy, UsageReport
from tests.conftest import make_settings
from tests.fakes import WholeAnswer

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3


class ScriptedLLM(WholeAnswer):
    """Answers by the prompt's first word: `reject` (permanent error), `down` (transient, on every
    provider), `fallback` (the primary fails, the fallback answers), `hold` (waits for `gate`)."""

    def __init__(self, name: str, gate: asyncio.Event, primary: bool) -> None:
        self.name, self.gate, self.primary = name, gate, primary

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> Completion:
        prompt = request.messages[-1].content
        word = prompt.split()[0]
        if word == "reject":
            raise PermanentLLMError("blocked", provider=self.name)
        if word == "down" or (word == "fallback" and self.primary):
            raise TransientLLMError("unavailable", provider=self.name, status_code=503)
        if word == "hold":
            await self.gate.wait()
        return Completion(
            content=prompt[::-1],
            provider=self.name,
            model=request.model or f"{self.name}-default",
            usage=Usage(input_tokens=len(prompt), output_tokens=2 * len(prompt)),
            latency_ms=17 * len(prompt) ** 2,  # spread over many latency buckets
        )


def scripted(gate: asyncio.Event) -> FallbackLLM:
    never_open = CircuitBreaker(failure_threshold=10_000, cooldown_s=1)
    primary, fallback = ScriptedLLM("gemini", gate, True), ScriptedLLM("openrouter", gate, False)
    return FallbackLLM(primary, fallback, never_open, CircuitBreaker(10_000, 1))


def body(prompt: str, **fields: Any) -> JobCreate:
    return JobCreate.model_validate({"messages": [{"role": "user", "content": prompt}], **fields})


def item(custom_id: str, prompt: str, **fields: Any) -> BatchItem:
    return BatchItem.model_validate(
        {"custom_id": custom_id, "messages": [{"role": "user", "content": prompt}], **fields}
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Not started: the factory starts and closes it."""
    if request.param == "sqlite":
        return SqliteJobStore(str(tmp_path / "chatjobs.db"))
    clients: AwsClients = request.getfixturevalue("aws_clients")
    layout: AwsLayout = request.getfixturevalue("aws_layout")
    return DynamoDbJobStore(clients, layout.table)


@pytest.fixture
def gate() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def services(store: Store, gate: asyncio.Event) -> AsyncIterator[Services]:
    settings = make_settings(
        worker_concurrency=2,
        job_max_attempts=MAX_ATTEMPTS,
        job_retry_base_s=0.01,
        job_retry_max_delay_s=0.05,
        webhook_retry_schedule="3600",
        model_aliases="m-a=gemini-2.5-flash,m-b=gemini-2.5-flash",
    )
    factory = ServiceFactory(settings, store=store, llm=scripted(gate))
    running = await factory.start(consume=True)
    try:
        yield running
    finally:
        gate.set()
        await running.close()


async def all_jobs(services: Services, tenant: str) -> list[Job]:
    jobs: list[Job] = []
    cursor: str | None = None
    while True:
        page, cursor = await services.store.list_jobs(tenant, limit=100, cursor=cursor)
        jobs += page
        if cursor is None:
            return jobs


async def settled(services: Services, tenant: str, timeout_s: float = 60) -> list[Job]:
    async with asyncio.timeout(timeout_s):
        while True:
            jobs = await all_jobs(services, tenant)
            if all(job.status.is_terminal for job in jobs):
                return jobs
            await asyncio.sleep(0.05)


async def mixed_run(services: Services, gate: asyncio.Event) -> None:
    chat, batches = services.chat, services.batches
    # Two jobs hold both workers, so what follows stays queued and can be cancelled.
    await chat.submit("t1", body("hold the first worker"))
    await chat.submit("t1", body("hold the second worker please", model="m-b"))
    waiting = [await chat.submit("t1", body(f"cancel me {n}")) for n in range(3)]
    slow_batch = await batches.create("t1", [item(f"s{n}", f"never run {n}") for n in range(4)])
    await chat.cancel("t1", waiting[0].id)
    await chat.cancel("t1", waiting[2].id)
    await batches.cancel("t1", slow_batch.id)
    gate.set()
    for prompt in ("hello there", "what is the capital of France", "reject this one"):
        await chat.submit("t1", body(prompt))
    await chat.submit("t1", body("hello there", model="m-a"))
    await chat.submit("t1", body("down and out"))
    await chat.submit("t1", body("fallback to the other one", model="m-a"))
    await chat.submit("t2", body("a question from the second tenant"))
    await settled(services, "t1")
    # Answered from the cache now: two single jobs and three requests of a batch.
    assert (await chat.submit("t1", body("hello there"))).cached
    assert (await chat.submit("t1", body("hello there", model="m-a"))).cached
    requests = [
        item("c1", "hello there"),
        item("c2", "what is the capital of France"),
        item("c3", "hello there", model="m-a"),
        item("n1", "a new prompt in the batch", model="m-b"),
        item("n2", "reject it in the batch"),
        item("n3", "fallback inside the batch"),
    ]
    batch = await batches.create("t1", requests)
    assert batch.counts.succeeded == 3
    await settled(services, "t1")
    for _ in range(500):  # the batch closes just after its last job's write
        if (await batches.get("t1", batch.id)).status is BatchStatus.completed:
            break
        await asyncio.sleep(0.02)
    assert (await batches.get("t1", batch.id)).status is BatchStatus.completed


def expected(jobs: list[Job], group_by: GroupBy) -> list[dict[str, Any]]:
    """The report, computed from the job list alone."""
    groups: dict[str, dict[str, Any]] = {}
    latencies: dict[str, list[int]] = {}
    for job in jobs:
        if not job.status.is_terminal:
            continue
        result = job.result
        assert job.completed_at is not None
        model = result.model if result else job.request.model or "default"
        provider = "cache" if job.cached else result.provider if result else "none"
        day = job.completed_at.astimezone(UTC).date().isoformat()
        by = {GroupBy.day: day, GroupBy.model: model, GroupBy.provider: provider}
        group = by.get(group_by, job.key_id or NO_KEY)  # GroupBy.key: the key
        row = groups.setdefault(group, _zero(group))
        shared = job.cached or job.coalesced  # another job's LLM call gave the answer
        answered = job.status is JobStatus.succeeded and not shared and result is not None
        row["requests"] += 1
        row[job.status.value] += 1
        row["cache_hits"] += job.cached
        row["coalesced"] += job.coalesced
        if not job.cached:
            exhausted = job.error is not None and job.error.code == "attempts_exhausted"
            row["llm_calls"] += job.attempts - exhausted
        if job.status is JobStatus.failed:
            assert job.error is not None
            codes = row["failed_by_code"]
            codes[job.error.code] = codes.get(job.error.code, 0) + 1
        if answered and result is not None:
            row["fallbacks"] += result.provider == "openrouter"  # the fallback of this run
            row["input_tokens"] += result.usage.input_tokens
            row["output_tokens"] += result.usage.output_tokens
            latencies.setdefault(group, []).append(result.latency_ms)
    for group, row in groups.items():
        found = sorted(latencies.get(group, []))
        for p in (50, 95):
            rank = math.ceil(p / 100 * len(found))
            row[f"latency_ms_p{p}"] = BUCKET_MS[latency_bucket(found[rank - 1])] if found else None
    return [groups[group] for group in sorted(groups)]


def _zero(group: str) -> dict[str, Any]:
    fields = (
        "requests",
        "succeeded",
        "failed",
        "cancelled",
        "cache_hits",
        "coalesced",
        "llm_calls",
    )
    counts = dict.fromkeys((*fields, "fallbacks", "input_tokens", "output_tokens"), 0)
    return {"group": group, **counts, "failed_by_code": {}}


async def report(services: Services, tenant: str, group_by: GroupBy) -> UsageReport:
    today = utcnow().date()  # the run may cross midnight: take yesterday too
    return await services.usage.report(tenant, today - timedelta(days=1), today, group_by)


async def test_every_counter_equals_the_job_list_and_tenants_see_their_own(
    services: Services, gate: asyncio.Event
) -> None:
    await mixed_run(services, gate)
    t1, t2 = await settled(services, "t1"), await settled(services, "t2")

    statuses = {job.status for job in t1}
    assert statuses == {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}
    codes = {job.error.code for job in t1 if job.error and job.status is JobStatus.failed}
    assert codes == {"llm_rejected", "llm_unavailable"}
    assert sum(job.cached for job in t1) == 5
    assert sum(bool(job.result and job.result.provider == "openrouter") for job in t1) == 2

    for tenant, jobs in (("t1", t1), ("t2", t2)):
        for group_by in GroupBy:
            found = (await report(services, tenant, group_by)).model_dump(mode="json")["data"]
            assert found == expected(jobs, group_by), (tenant, group_by)

    (row,) = (await report(services, "t1", GroupBy.day)).data
    assert (row.requests, row.cancelled, row.cache_hits, row.fallbacks) == (len(t1), 6, 5, 2)
    assert row.llm_calls == len(t1) - 5 - 6 + MAX_ATTEMPTS - 1  # the down job tried 3 times
    (other,) = (await report(services, "t2", GroupBy.day)).data
    assert other.requests == 1 == len(t2)
