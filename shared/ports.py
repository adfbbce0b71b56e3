"""Ports: the interfaces the service depends on. Adapters in `shared/adapters/` implement them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.models import (
    Batch,
    ChatRequest,
    Completion,
    Job,
    JobError,
    JobStatus,
    WebhookDelivery,
)

JobHandler = Callable[[str], Awaitable[None]]
JobFinished = Callable[[Job], Awaitable[None]]


class JobStore(Protocol):
    """Durable job and batch records. Every status change is a compare-and-set."""

    async def start(self) -> None:
        """Open connections and create the schema if needed."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the store answers (used by /readyz)."""

    async def create_job(self, job: Job) -> Job:
        """Insert a job and return it. If the job has an idempotency_key that the same tenant used
        within the last 24 h, insert nothing and return that earlier job instead."""

    async def get_job(self, job_id: str, tenant: str | None = None) -> Job | None:
        """A job by id; with `tenant`, only if it belongs to that tenant."""

    async def list_jobs(
        self,
        tenant: str,
        *,
        status: JobStatus | None = None,
        batch_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first (or oldest first: a batch's submission order), with an opaque cursor
        for the next page; ValueError for a cursor this store did not make."""

    async def transition(
        self,
        job_id: str,
        from_statuses: Sequence[JobStatus],
        to_status: JobStatus,
        *,
        if_attempts: int | None = None,
        **changes: Any,
    ) -> Job | None:
        """Move a job to `to_status` only if its status is one of `from_statuses` (and, with
        `if_attempts`, only if no later claim happened: it fences off a worker whose lease ran out).

        `changes` sets other Job fields in the same write. Keeps the job's batch counters in step.
        Returns the updated job, or None when the condition did not hold.
        """

    async def claim(self, job_id: str, lease_until: datetime, now: datetime) -> Job | None:
        """queued → running (or running with an expired lease → running); attempts += 1."""

    async def unfinished_job_ids(
        self, limit: int = 10_000, updated_before: datetime | None = None
    ) -> list[str]:
        """Ids of jobs still queued or running, oldest first; with `updated_before`, only those
        unchanged since then (for re-enqueueing after a restart or a lost queue message)."""

    async def count_unfinished(self) -> dict[JobStatus, int]:
        """How many jobs are queued and how many running (both keys always present): the
        backlog that /metrics reports for scaling decisions. One cheap query, not a scan."""

    async def create_batch(self, batch: Batch, jobs: Sequence[Job]) -> None:
        """Store a batch and all its jobs in one bulk write."""

    async def get_batch(self, batch_id: str, tenant: str | None = None) -> Batch | None: ...

    async def set_batch_status(
        self, batch_id: str, from_statuses: Sequence[str], to_status: str, **changes: Any
    ) -> Batch | None:
        """Compare-and-set a batch's status (so `batch.completed` fires exactly once)."""

    async def end_queued_jobs(
        self, batch_id: str, to_status: JobStatus, error: JobError | None = None
    ) -> int:
        """queued → `to_status` (cancelled or failed) for every job of the batch, in one write;
        returns how many jobs moved."""

    async def requeue_running(self) -> int:
        """running → queued for every job (embedded start-up: the previous process is gone)."""

    async def closable_batch_ids(self) -> list[str]:
        """Batches still open although every job has ended (a completion check was missed)."""

    async def set_webhook(self, subject_id: str, delivery: WebhookDelivery) -> None:
        """Record webhook delivery state on a job or batch (by its id)."""

    async def due_webhooks(self, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        """Claim ids of jobs/batches whose pending webhook is due; pushes their next attempt to
        `lease_until` so no other worker takes them meanwhile."""


class ResultCache(Protocol):
    """Completed results by cache key, with a time to live."""

    async def get(self, key: str) -> Completion | None: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The hits among `keys`, in one round trip where the backend allows it."""

    async def set(self, key: str, value: Completion, ttl_s: int) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class JobQueue(Protocol):
    """Where accepted jobs wait for a worker. Delivery is at least once."""

    async def start(self, handler: JobHandler | None = None) -> None:
        """Connect. An in-process queue also starts its workers, which call `handler(job_id)`."""

    async def close(self) -> None: ...

    async def enqueue(self, job_id: str, delay_s: float = 0) -> None:
        """Raise QueueUnavailable when the queue cannot take the job."""

    async def enqueue_many(self, job_ids: Sequence[str], group: str | None = None) -> None:
        """Enqueue a batch's jobs in one pipelined call.

        Jobs enqueued one by one go ahead of batch jobs, and the jobs of different groups
        (batches) are interleaved, so one tenant's big batch cannot starve everyone else."""

    async def ping(self) -> bool: ...


class LLMProvider(Protocol):
    """One LLM backend. Raises TransientLLMError or PermanentLLMError."""

    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def close(self) -> None: ...
