"""Budgets exact under concurrency across processes, at the use-case level: two OS processes, each
with its own ChatService on one SQLite file, submit at once against one key's budget."""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from shared.adapters.store.sqlite import SqliteJobStore
from shared.errors import BudgetExceeded
from shared.execution import JobExecutor
from shared.key_usage import month_of
from shared.keys import Caller, KeyLimits
from shared.models import JobCreate, JobStatus, utcnow
from shared.retry import RetryPolicy
from shared.service import ChatService
from tests.fakes import FakeJobQueue, FakeLLM

PROCESSES = 2
PER_PROCESS = 100  # 200 requests in all
TOKENS = 6  # FakeLLM answers "w1 w2 w3" with 3 tokens in and 3 out


@dataclass(frozen=True)
class Run:
    path: str
    limits: dict[str, int]
    max_tokens: int | None = None


def submit_all(run: Run, start: Barrier, results: Any, index: int) -> None:
    """One process: PER_PROCESS concurrent submits; reports (accepted, refused messages)."""

    async def main() -> tuple[int, list[str]]:
        store = SqliteJobStore(run.path)
        await store.start()
        chat = ChatService(store, None, FakeJobQueue())
        caller = Caller("t1", "key_shared", KeyLimits(**run.limits))

        async def one(n: int) -> str | None:
            prompt = f"p{index} q{n} x"
            body = JobCreate.model_validate(
                {"messages": [{"role": "user", "content": prompt}], "max_tokens": run.max_tokens}
            )
            try:
                await chat.submit("t1", body, caller=caller)
            except BudgetExceeded as exc:
                return str(exc)
            return None

        start.wait()  # both processes submit at the same moment
        outcomes = await asyncio.gather(*(one(n) for n in range(PER_PROCESS)))
        await store.close()
        refused = [o for o in outcomes if o is not None]
        return PER_PROCESS - len(refused), refused

    results.put(asyncio.run(main()))


def in_two_processes(run: Run) -> tuple[int, list[str]]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES), context.Queue()
    procs = [
        context.Process(target=submit_all, args=(run, start, results, i)) for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return sum(a for a, _ in outcomes), [m for _, refused in outcomes for m in refused]


async def prepared(path: Path) -> SqliteJobStore:
    store = SqliteJobStore(str(path))  # the schema exists before the processes race to it
    await store.start()
    return store


async def test_a_request_budget_of_50_takes_exactly_50_of_200_from_two_processes(
    tmp_path: Path,
) -> None:
    store = await prepared(tmp_path / "jobs.db")
    try:
        run = Run(str(tmp_path / "jobs.db"), {"monthly_requests": 50})
        accepted, refused = await asyncio.to_thread(in_two_processes, run)

        assert (accepted, len(refused)) == (50, 150)
        assert all("monthly_requests budget of 50 requests" in m for m in refused)
        month = await store.key_month("key_shared", month_of(utcnow()))
        stored, _ = await store.list_jobs("t1", limit=1000)
        assert (month.requests, len(stored)) == (50, 50)
    finally:
        await store.close()


async def test_a_token_budget_takes_exactly_what_fits_and_settles_to_it(tmp_path: Path) -> None:
    store = await prepared(tmp_path / "jobs.db")
    try:
        budget = 50 * TOKENS
        run = Run(str(tmp_path / "jobs.db"), {"monthly_tokens": budget}, max_tokens=TOKENS)
        accepted, refused = await asyncio.to_thread(in_two_processes, run)

        assert (accepted, len(refused)) == (50, 150)
        assert all(f"monthly_tokens budget of {budget} tokens" in m for m in refused)
        jobs, _ = await store.list_jobs("t1", limit=1000)
        executor = JobExecutor(
            store,
            None,
            FakeLLM(),
            job_timeout_s=5,
            retry=RetryPolicy(budget_s=60, base_s=0, max_delay_s=0, max_attempts=3),
            cache_ttl_s=60,
        )
        for job in jobs:
            await executor.deliver(job.id)
        ended, _ = await store.list_jobs("t1", status=JobStatus.succeeded, limit=1000)
        used = sum(
            j.result.usage.input_tokens + j.result.usage.output_tokens for j in ended if j.result
        )
        month = await store.key_month("key_shared", month_of(utcnow()))
        assert (len(ended), used, month.tokens) == (50, budget, budget)
    finally:
        await store.close()
