"""AdminService: what an operator reads and does across tenants, for `/v1/admin/...` and the
console alike. Reads go through the `AdminStore` port (indexed, bounded); actions go through the
same use cases tenants reach (ChatService, BatchService, WebhookDispatcher), so the rules are
theirs: the job state machine is shared/transitions.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.admin_queries import BatchQuery, JobQuery
from shared.batches import BatchService
from shared.dead_letters import DeadLetterDesk, NoDeadLetters
from shared.errors import Conflict, NotFound
from shared.heartbeats import WorkerBeat
from shared.models import (
    ATTEMPT_LOG_LENGTH,
    BATCH_ID_EXAMPLE,
    AttemptRecord,
    Batch,
    BatchPublic,
    ChatRequest,
    Job,
    JobPublic,
    WebhookAttempt,
    WebhookState,
    utcnow,
)
from shared.overview import (
    SAMPLE,
    WINDOW,
    Overview,
    backlog_figures,
    hour_figures,
    provider_figures,
    worker_figures,
)
from shared.ports import DeadLetters, Store, WorkerRegistry
from shared.service import ChatService
from shared.usage_report import GroupBy, UsageRow, period, summarize
from shared.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)


KEY_PAGE = 100  # keys read a page when listing the tenants they belong to


class AdminJob(JobPublic):
    """A job as the operator sees it: its owner too."""

    tenant: str = Field(description="The tenant that submitted it.", examples=["acme"])
    key_id: str | None = Field(None, description="The run-time key that submitted it, if any.")


class AdminJobDetail(AdminJob):
    """One job in full: its request, its attempts that did not succeed, and each webhook
    attempt."""

    request: ChatRequest = Field(description="What was asked.")
    attempt_log: list[AttemptRecord] = Field(
        description=f"Its latest attempts that did not succeed (up to {ATTEMPT_LOG_LENGTH}), "
        "oldest first; a successful last attempt is the job itself (`completed_at`, `result`)."
    )
    webhook_attempts: list[WebhookAttempt] = Field(
        description="The latest webhook delivery attempts, oldest first."
    )


class AdminJobPage(BaseModel):
    """A page of every tenant's jobs, newest first."""

    data: list[AdminJob] = Field(description="The jobs of this page.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last one. A page may hold "
        "fewer than `limit` jobs (a filter dropped most of what was read) and still have one."
    )


class AdminBatch(BatchPublic):
    """A batch as the operator sees it."""

    tenant: str = Field(description="The tenant that submitted it.", examples=["acme"])


class AdminBatchPage(BaseModel):
    """A page of every tenant's batches, newest first."""

    data: list[AdminBatch] = Field(description="The batches of this page, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class FailingWebhook(BaseModel):
    """A webhook that gave up, or waits to retry after failing."""

    subject_id: str = Field(
        description="The job or batch it announces.", examples=[BATCH_ID_EXAMPLE]
    )
    kind: Literal["job", "batch"] = Field(description="What the subject is.")
    tenant: str = Field(description="The subject's tenant.")
    url: str = Field(description="Where it goes.")
    webhook_id: str = Field(description="Its `webhook-id` header.")
    state: WebhookState = Field(description="`failed` (gave up) or `pending` (will retry).")
    attempts: int = Field(description="Attempts made.")
    last_status_code: int | None = Field(description="The receiver's last status; null: none.")
    last_error: str | None = Field(description="Why the last attempt failed.")
    next_attempt_at: str | None = Field(description="When it is tried next; null: never.")
    history: list[WebhookAttempt] = Field(description="The latest attempts, oldest first.")


class FailingWebhooks(BaseModel):
    """Webhooks that gave up or wait to retry."""

    data: list[FailingWebhook] = Field(description="Gave up first, then most attempts first.")


class TenantUsage(BaseModel):
    """One tenant's usage rows."""

    tenant: str = Field(description="The tenant.")
    data: list[UsageRow] = Field(description="Its rows, in group order.")


class AdminUsage(BaseModel):
    """Usage of every tenant (or one), and in total."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from", description="First day (UTC).")
    to: date = Field(description="Last day, included (UTC).")
    group_by: GroupBy = Field(description="What each row adds up.")
    total: list[UsageRow] = Field(description="Every tenant's rows added up.")
    tenants: list[TenantUsage] = Field(description="Each tenant's rows.")


def admin_job(job: Job) -> AdminJob:
    return AdminJob(**job.public().model_dump(), tenant=job.tenant, key_id=job.key_id)


def admin_job_detail(job: Job) -> AdminJobDetail:
    attempts = job.webhook.history if job.webhook else []
    return AdminJobDetail(
        **admin_job(job).model_dump(),
        request=job.request,
        attempt_log=job.attempt_log,
        webhook_attempts=attempts,
    )


def admin_batch(batch: Batch) -> AdminBatch:
    return AdminBatch(**batch.public().model_dump(), tenant=batch.tenant)


def failing_webhook(subject: Job | Batch) -> FailingWebhook:
    hook = subject.webhook
    assert hook is not None
    return FailingWebhook(
        subject_id=subject.id,
        kind="job" if isinstance(subject, Job) else "batch",
        tenant=subject.tenant,
        url=subject.webhook_url or "",
        webhook_id=hook.id,
        state=hook.state,
        attempts=hook.attempts,
        last_status_code=hook.last_status_code,
        last_error=hook.last_error,
        next_attempt_at=hook.next_attempt_at.isoformat() if hook.next_attempt_at else None,
        history=hook.history,
    )


class AdminService:
    def __init__(
        self,
        store: Store,
        chat: ChatService,
        batches: BatchService,
        webhooks: WebhookDispatcher,
        workers: WorkerRegistry | None,
        tenants: Sequence[str],
        *,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.store, self.chat, self.batches = store, chat, batches
        self.webhooks, self.workers, self.tenants = webhooks, workers, tenants
        self.dead_letters = DeadLetterDesk(dead_letters or NoDeadLetters())

    # reads

    async def jobs(
        self, query: JobQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        return await self.store.find_jobs(query, limit=limit, cursor=cursor)

    async def job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(job_id)
        return job

    async def batches_page(
        self, query: BatchQuery, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Batch], str | None]:
        return await self.store.find_batches(query, limit=limit, cursor=cursor)

    async def batch(self, batch_id: str) -> Batch:
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            raise NotFound(batch_id)
        return batch

    async def failing_webhooks(self, limit: int = 100) -> list[Job | Batch]:
        return await self.store.failing_webhooks(limit=limit)

    async def overview(self) -> Overview:
        now = utcnow()
        backlog, (recent, sampled), beats = await asyncio.gather(
            self.store.queue_backlog(), self._last_hour(now), self._beats()
        )
        workers = worker_figures(beats, now)
        return Overview(
            generated_at=now,
            backlog=backlog_figures(backlog, now),
            last_hour=hour_figures(recent, sampled),
            providers=provider_figures(workers),
            workers=workers,
        )

    async def _last_hour(self, now: datetime) -> tuple[list[Job], bool]:
        query = JobQuery(created_from=now - WINDOW)
        found: list[Job] = []
        cursor: str | None = None
        while len(found) < SAMPLE:
            page, cursor = await self.store.find_jobs(query, limit=500, cursor=cursor)
            found += page
            if cursor is None:
                return found, False
        return found[:SAMPLE], True

    async def _beats(self) -> list[WorkerBeat]:
        if self.workers is None:
            return []
        try:
            return await self.workers.beats()
        except Exception:
            log.exception("the worker registry could not be read")
            return []

    async def usage(
        self,
        start: date | None,
        end: date | None,
        group_by: GroupBy,
        tenant: str | None = None,
    ) -> AdminUsage:
        """From the usage counters of each known tenant, never from jobs."""
        start, end = period(start, end, utcnow().date())
        tenants = [tenant] if tenant is not None else await self.known_tenants()
        counters = await asyncio.gather(*(self.store.usage(t, start, end) for t in tenants))
        per_tenant = [
            TenantUsage(tenant=t, data=summarize(c, group_by))
            for t, c in zip(tenants, counters, strict=True)
        ]
        every = [row for c in counters for row in c]
        return AdminUsage(
            from_=start,
            to=end,
            group_by=group_by,
            total=summarize(every, group_by),
            tenants=per_tenant,
        )

    async def known_tenants(self) -> list[str]:
        """The tenants of the bootstrap keys (API_KEYS) and of every run-time key, revoked
        ones too (their usage stays theirs), sorted."""
        found, cursor = set(self.tenants), None
        while True:
            keys, cursor = await self.store.list_keys(limit=KEY_PAGE, cursor=cursor)
            found.update(key.tenant for key in keys)
            if cursor is None:
                return sorted(found)

    # actions

    async def cancel_job(self, job_id: str) -> Job:
        job = await self.job(job_id)
        return await self.chat.cancel(job.tenant, job_id)

    async def retry_job(self, job_id: str) -> Job:
        job = await self.job(job_id)
        if job.batch_id is not None:
            return await self.batches.retry_job(job.tenant, job.batch_id, job_id)
        return await self.chat.retry(job.tenant, job_id)

    async def cancel_batch(self, batch_id: str) -> Batch:
        batch = await self.batch(batch_id)
        return await self.batches.cancel(batch.tenant, batch_id)

    async def redeliver_webhook(self, subject_id: str) -> Job | Batch:
        """Send a job's or batch's webhook event again now."""
        subject = await self.store.webhook_subject(subject_id)
        if subject is None:
            raise NotFound(subject_id)
        if not subject.webhook_url:
            raise Conflict(f"{subject_id} has no webhook_url")
        if subject.webhook is None:
            raise Conflict(f"{subject_id} has not ended: it has no event to send yet")
        await self.webhooks.redeliver(subject)
        again = await self.store.webhook_subject(subject_id)
        return again if again is not None else subject


def job_page(jobs: list[Job], cursor: str | None) -> AdminJobPage:
    return AdminJobPage(data=[admin_job(j) for j in jobs], next_cursor=cursor)
