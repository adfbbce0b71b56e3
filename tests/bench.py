"""`make bench`: throughput and memory, each reported as a ratio against a baseline run here.

1. Batch accept: one 5,000-job batch (one bulk write + one enqueue) vs 5,000 single submits.
2. Job pipeline: submit → run → succeeded for 1,000 jobs through the embedded service (SQLite,
   in-process queue, an instant LLM) vs the bare store writes those jobs need (create + 2 CAS).
3. Memory: peak traced memory to accept a 5,000-job batch, per job, vs one job's JSON size.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shared.adapters.store.sqlite import SqliteJobStore
from shared.factory import ServiceFactory, Services
from shared.models import BatchItem, Job, JobCreate, JobStatus, Message, utcnow
from shared.ports import JobOutcome
from tests.conftest import make_settings
from tests.fakes import FakeJobQueue, FakeLLM

BATCH = 5_000
PIPELINE = 1_000


def body(n: int) -> JobCreate:
    return JobCreate(messages=[Message(role="user", content=f"prompt {n}")], cache=False)


def item(n: int) -> BatchItem:
    return BatchItem(custom_id=f"c{n}", messages=[Message(role="user", content=f"prompt {n}")])


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def started_services(db: Path, queue: FakeJobQueue | None = None) -> Services:
    settings = make_settings(sqlite_path=str(db), worker_concurrency=32, cache_backend="none")
    factory = ServiceFactory(settings, queue=queue, llm=FakeLLM("bench"))
    return await factory.start(consume=True, deliver_webhooks=False)


async def bench_batch_accept(tmp: Path) -> tuple[float, float]:
    queue = FakeJobQueue()  # measure the API side only: nothing runs the jobs
    services = await started_services(tmp / "accept.db", queue)
    try:
        single = await timed(lambda: _submit_each(services, BATCH))
        batched = await timed(lambda: services.batches.create("t", [item(n) for n in range(BATCH)]))
    finally:
        await services.close()
    return single, batched


async def _submit_each(services: Services, count: int) -> None:
    for n in range(count):
        await services.chat.submit("t", body(n))


async def bench_pipeline(tmp: Path) -> tuple[float, float]:
    store = SqliteJobStore(str(tmp / "baseline.db"))
    await store.start()
    try:
        baseline = await timed(lambda: _bare_store_writes(store, PIPELINE))
    finally:
        await store.close()
    services = await started_services(tmp / "pipeline.db")
    try:
        service = await timed(lambda: _submit_and_finish(services, PIPELINE))
    finally:
        await services.close()
    return baseline, service


async def _bare_store_writes(store: SqliteJobStore, count: int) -> None:
    for n in range(count):
        job = await store.create_job(Job(tenant="t", request=body(n).chat_request()))
        await store.claim(job.id, lease_until=utcnow() + timedelta(seconds=60), now=utcnow())
        await store.finish(job.id, JobOutcome(JobStatus.succeeded, expect=JobStatus.running))


async def _submit_and_finish(services: Services, count: int) -> None:
    ids = [(await services.chat.submit("t", body(n))).id for n in range(count)]
    while True:
        page, _ = await services.store.list_jobs("t", status=JobStatus.succeeded, limit=count)
        if len(page) == len(ids):
            return
        await asyncio.sleep(0.01)


async def bench_memory(tmp: Path) -> tuple[int, int]:
    services = await started_services(tmp / "memory.db", FakeJobQueue())
    items = [item(n) for n in range(BATCH)]
    try:
        tracemalloc.start()
        await services.batches.create("t", items)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        await services.close()
    one_job = len(Job(tenant="t", request=items[0].chat_request()).model_dump_json())
    return peak // BATCH, one_job


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        single, batched = await bench_batch_accept(tmp)
        baseline, service = await bench_pipeline(tmp)
        per_job, one_job = await bench_memory(tmp)
    table = Table(title="chatjobs benchmarks (ratios against a baseline run in this script)")
    for column in ("benchmark", "baseline", "measured", "ratio"):
        table.add_column(column)
    table.add_row(
        f"accept {BATCH} prompts",
        f"{single:.2f} s as single submits",
        f"{batched:.2f} s as one batch",
        f"{single / batched:.1f}x faster as a batch",
    )
    table.add_row(
        f"{PIPELINE} jobs end to end",
        f"{baseline:.2f} s bare store writes",
        f"{service:.2f} s submit → succeeded",
        f"{service / baseline:.2f}x the bare writes",
    )
    table.add_row(
        "batch accept memory",
        f"{one_job} B one job's JSON",
        f"{per_job} B peak per job",
        f"{per_job / one_job:.1f}x the JSON size",
    )
    Console().print(table)


if __name__ == "__main__":
    asyncio.run(main())
