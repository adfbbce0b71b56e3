"""One table of job histories, played on the fake, SQLite and DynamoDB (moto): each store must end
with the same bookkeeping — every job's status, attempts, error and attempt log, the batch's
counters and status, and the tenant's usage counters — as the table says.

The decisions are shared/transitions.py's; the stores only apply them. This is the check that
they apply them alike, including a redelivery after a lost lease, a late worker fenced off, a
cancel racing a finish, cache hits and a retried failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.job_writes import JobWrites
from shared.models import (
    Batch,
    BatchCounts,
    Completion,
    Job,
    JobError,
    JobStatus,
    Usage,
    utcnow,
)
from shared.ports import Store
from shared.transitions import AttemptFailure, JobOutcome
from tests.contract.test_store_contract import REQUEST
from tests.fakes import FakeJobStore

pytestmark = pytest.mark.integration  # DynamoDB through moto's server

ANSWER = Completion(
    content="ok", provider="gemini", model="m", usage=Usage(input_tokens=3, output_tokens=2)
)
BUSY = AttemptFailure("http_503", "HTTP 503: busy", "gemini")
REFUSED = JobError(code="llm_rejected", message="gemini: blocked")

# A step: (operation, job number) or (operation,) for the batch. The jobs are one batch of
# JOBS, the first CACHED of them answered from the cache when it was submitted.
JOBS, CACHED = 6, 1
Step = tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    steps: list[Step]
    statuses: list[str]  # each job's status at the end, in order
    counts: dict[str, int]  # the batch's counters (total is JOBS)
    batch: str  # the batch's status
    requests: int  # the usage counters': one a run that ended (a retried failure: two)
    llm_calls: int  # one an attempt that reached a provider
    attempt_logs: dict[int, list[tuple[int, str, str | None]]]  # job → (attempt, outcome, code)


CASES = {
    "each job run once": Case(
        steps=[("claim", n) for n in range(1, JOBS)]
        + [("succeed", n) for n in range(1, JOBS - 1)]
        + [("fail", JOBS - 1)],
        statuses=["succeeded"] * 5 + ["failed"],
        counts={"succeeded": 5, "failed": 1},
        batch="in_progress",  # every job ended: BatchService closes it, not the store
        requests=6,
        llm_calls=5,  # the refused prompt was a call too
        attempt_logs={5: [(1, "failed", "llm_rejected")]},
    ),
    "a retry, then a redelivery after a lost lease": Case(
        steps=[
            ("claim", 1),
            ("requeue", 1),
            ("claim", 1),
            ("claim_lapsed", 2),  # the worker died holding it: its lease ran out
            ("claim", 2),  # redelivered: attempt 2, the first one lost
            ("succeed_as", 2, 1),  # the first worker wakes up late: fenced off
            ("succeed", 2),
            ("succeed", 1),
        ],
        statuses=["succeeded", "succeeded", "succeeded", "queued", "queued", "queued"],
        counts={"succeeded": 3, "queued": 3},
        batch="in_progress",
        requests=3,
        llm_calls=4,  # every attempt: the retried one and the lost one too
        attempt_logs={1: [(1, "retrying", "http_503")], 2: [(1, "lost", "lease_expired")]},
    ),
    "a cancel racing a finish, then the batch cancelled": Case(
        steps=[
            ("claim", 1),
            ("claim", 2),
            ("cancel", 3),  # queued: cancelled
            ("cancel", 1),  # running: a running job is not cancelled, it ends as its worker says
            ("succeed", 1),
            ("cancel_batch",),  # the queued ones; job 2 still runs
            ("succeed", 2),
        ],
        statuses=["succeeded", "succeeded", "succeeded", "cancelled", "cancelled", "cancelled"],
        counts={"succeeded": 3, "cancelled": 3},
        batch="in_progress",
        requests=6,
        llm_calls=2,
        attempt_logs={},
    ),
    "a failure retried": Case(
        steps=[
            ("claim", 1),
            ("fail", 1),
            ("retry_failed", 1),
            ("claim", 1),
            ("succeed", 1),
        ],
        statuses=["succeeded", "succeeded"] + ["queued"] * 4,
        counts={"succeeded": 2, "queued": 4},
        batch="in_progress",
        requests=3,
        llm_calls=2,
        attempt_logs={1: [(1, "failed", "llm_rejected")]},
    ),
}


def the_batch() -> tuple[Batch, list[Job]]:
    batch = Batch(tenant="t1")
    jobs = [
        Job(tenant="t1", request=REQUEST, batch_id=batch.id, custom_id=f"r{n}") for n in range(JOBS)
    ]
    for n in range(CACHED):
        jobs[n] = jobs[n].model_copy(
            update={"status": JobStatus.succeeded, "cached": True, "result": ANSWER}
        )
    batch.counts = BatchCounts(total=JOBS, queued=JOBS - CACHED, succeeded=CACHED)
    return batch, jobs


class Player:
    """Plays a case's steps through JobWrites, as the workers and services do."""

    def __init__(self, store: Store, jobs: list[Job]) -> None:
        self.store, self.writes, self.jobs = store, JobWrites(store), jobs
        self.attempts = [0] * len(jobs)

    async def play(self, step: Step) -> None:
        operation: Callable[..., Any] = getattr(self, f"_{step[0]}")
        await operation(*step[1:])

    def _id(self, n: int) -> str:
        return self.jobs[n].id

    async def _claim(self, n: int, lapsed: bool = False) -> None:
        now = utcnow()
        lease = now - timedelta(seconds=1) if lapsed else now + timedelta(minutes=5)
        claimed = await self.writes.claim(self._id(n), lease_until=lease, now=now)
        assert claimed is not None
        self.attempts[n] = claimed.attempts

    async def _claim_lapsed(self, n: int) -> None:
        await self._claim(n, lapsed=True)

    async def _requeue(self, n: int) -> None:
        note = JobError(code="retrying", message="busy; next try soon")
        await self.writes.requeue(
            self._id(n), attempt=self.attempts[n], note=note, not_before=None, failure=BUSY
        )

    async def _succeed(self, n: int) -> None:
        await self._succeed_as(n, self.attempts[n])

    async def _succeed_as(self, n: int, attempt: int) -> None:
        done = JobOutcome(JobStatus.succeeded, JobStatus.running, attempt=attempt, result=ANSWER)
        await self.writes.finish(self._id(n), done)

    async def _fail(self, n: int) -> None:
        failed = JobOutcome(
            JobStatus.failed, JobStatus.running, attempt=self.attempts[n], error=REFUSED
        )
        await self.writes.finish(self._id(n), failed)

    async def _cancel(self, n: int) -> None:
        await self.writes.finish(self._id(n), JobOutcome(JobStatus.cancelled, JobStatus.queued))

    async def _cancel_batch(self) -> None:
        batch_id = self.jobs[0].batch_id
        assert batch_id is not None
        await self.writes.end_queued_jobs(batch_id, JobStatus.cancelled)

    async def _retry_failed(self, n: int) -> None:
        assert await self.writes.retry_failed_job(self._id(n)) is not None


async def bookkeeping(store: Store, batch: Batch, jobs: list[Job]) -> dict[str, Any]:
    read = [await store.get_job(job.id) for job in jobs]
    stored = await store.get_batch(batch.id)
    assert stored is not None and all(job is not None for job in read)
    today = utcnow().date()
    usage = await store.usage("t1", today, today)
    return {
        "statuses": [job.status.value for job in read if job is not None],
        "attempts": [job.attempts for job in read if job is not None],
        "errors": [job.error.code if job and job.error else None for job in read],
        "attempt_logs": {
            n: [(a.attempt, a.outcome.value, a.code) for a in job.attempt_log]
            for n, job in enumerate(read)
            if job is not None and job.attempt_log
        },
        "counts": stored.counts.model_dump(),
        "batch": stored.status.value,
        "usage": sorted(row.model_dump(mode="json", exclude={"day"}).items() for row in usage),
    }


@pytest.fixture
async def stores(
    tmp_path: Path, aws_clients: AwsClients, aws_layout: AwsLayout
) -> AsyncIterator[dict[str, Store]]:
    sqlite = SqliteJobStore(str(tmp_path / "chatjobs.db"))
    dynamodb = DynamoDbJobStore(aws_clients, aws_layout.table)
    await sqlite.start()
    await dynamodb.start()
    yield {"fake": FakeJobStore(), "sqlite": sqlite, "dynamodb": dynamodb}
    await sqlite.close()
    await dynamodb.close()


async def played(store: Store, case: Case) -> dict[str, Any]:
    batch, jobs = the_batch()
    await store.create_batch(batch, jobs)
    player = Player(store, jobs)
    for step in case.steps:
        await player.play(step)
    return await bookkeeping(store, batch, jobs)


@pytest.mark.parametrize("name", list(CASES))
async def test_every_store_keeps_the_books_the_table_says(
    stores: dict[str, Store], name: str
) -> None:
    case = CASES[name]
    books = {kind: await played(store, case) for kind, store in stores.items()}
    for kind, kept in books.items():
        assert kept["statuses"] == case.statuses, kind
        counts = {k: v for k, v in kept["counts"].items() if v and k != "total"}
        assert counts == case.counts and kept["counts"]["total"] == JOBS, kind
        assert kept["batch"] == case.batch, kind
        assert kept["attempt_logs"] == case.attempt_logs, kind
        usage = [dict(row) for row in kept["usage"]]
        assert sum(row["llm_calls"] for row in usage) == case.llm_calls, kind
        assert sum(row["cache_hits"] for row in usage) == CACHED, kind
        assert sum(row["requests"] for row in usage) == case.requests, kind
    # and the same books everywhere, to the last counter
    assert books["sqlite"] == books["fake"]
    assert books["dynamodb"] == books["fake"]
