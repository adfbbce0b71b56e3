"""Intake: what single jobs (ChatService) and batches (BatchService) share on their way in.

Both read the result cache failing open, answer a hit as a finished cached job, store under
the caller's key ticket and the queue's admission (giving the ticket back if the write fails
or finds an earlier replay), and refuse a replayed Idempotency-Key whose body differs. Those
steps live here once; each service adds only what is its own (one job vs many, one enqueue
vs a pipelined one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from shared.admission import Admission
from shared.errors import Conflict
from shared.job_writes import JobWrites
from shared.key_limits import KeyGate, KeyTicket
from shared.lanes import Lane
from shared.metrics import JobMetrics
from shared.model_catalog import ModelCatalog
from shared.models import Completion, Job, JobStatus
from shared.ports import JobQueue, ResultCache, Store
from shared.webhooks.hooks import WebhookHooks

log = logging.getLogger(__name__)


class Submitted(Protocol):
    """A job or a batch as submitted: its id and the hash of its body, for replays."""

    @property
    def id(self) -> str: ...

    @property
    def request_hash(self) -> str | None: ...


SubmittedT = TypeVar("SubmittedT", bound=Submitted)


def same_body(existing: SubmittedT, submitted: Submitted) -> SubmittedT:
    """The earlier submission an Idempotency-Key made, if this one has the same body."""
    if existing.request_hash != submitted.request_hash:
        raise Conflict("Idempotency-Key was already used with a different request body")
    return existing


class Intake:
    def __init__(
        self,
        store: Store,
        cache: ResultCache | None,
        queue: JobQueue,
        hooks: WebhookHooks | None = None,
        *,
        admission: Admission | None = None,
        models: ModelCatalog | None = None,
        metrics: JobMetrics | None = None,
        gate: KeyGate | None = None,
    ) -> None:
        self.store = store
        self.writes = JobWrites(store)
        self.cache = cache
        self.queue = queue
        self.hooks = hooks or WebhookHooks()
        self.admission = admission or Admission(store, max_queued=0)
        self.models = models or ModelCatalog()
        self.metrics = metrics or JobMetrics()
        self.gate = gate or KeyGate(store)  # the caller's key's limits (shared/key_limits.py)

    async def cached(self, keys: Sequence[str | None]) -> dict[str, Completion]:
        """The cached answers of `keys` (a None key: cache disabled); a cache outage is a miss
        for every key, never a failed submit."""
        wanted = [k for k in keys if k]
        if not wanted or self.cache is None:
            return {}
        try:
            if len(wanted) == 1:  # one item read, not a batch read, for a single job
                hit = await self.cache.get(wanted[0])
                return {wanted[0]: hit} if hit is not None else {}
            return await self.cache.get_many(wanted)
        except Exception:
            log.warning("cache read failed; treating as a miss", exc_info=True)
            return {}

    def answered(self, job: Job, hit: Completion, at: datetime) -> Job:
        """`job` finished from the cache at `at`: succeeded, cached, its webhook due."""
        return job.model_copy(
            update={
                "status": JobStatus.succeeded,
                "cached": True,
                "result": hit,
                "completed_at": at,
                "updated_at": at,
                "webhook": self.hooks.delivery_for(job.webhook_url),
            }
        )

    async def store_admitted(
        self,
        submitted: Submitted,
        ticket: KeyTicket | None,
        queued: tuple[int, Lane],
        create: Callable[[], Awaitable[SubmittedT]],
    ) -> SubmittedT:
        """`create()` once `queued[0]` jobs fit the `queued[1]` lane (Overloaded otherwise).
        The key's ticket is given back if anything fails, or if the store found an earlier
        submission under the same Idempotency-Key (that one counted already)."""
        count, lane = queued
        try:
            if count:
                await self.admission.admit(count, lane)  # Overloaded past MAX_QUEUED_JOBS
            stored = await create()
        except BaseException:
            await asyncio.shield(self.gate.refund(ticket))
            raise
        if stored.id != submitted.id:
            await self.gate.refund(ticket)
        return stored
