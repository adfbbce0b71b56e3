"""ServiceFactory: the one composition root. Chooses and wires adapters from Settings.

The API calls it in its lifespan, the worker in its startup hook, tests with overrides. Drivers are
imported only in the branch that needs them, and nothing connects until `start()`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from shared.batches import BatchService
from shared.config import Settings
from shared.execution import JobExecutor
from shared.metrics import Backlog, JobMetrics
from shared.models import Job
from shared.ports import JobQueue, JobStore, LLMProvider, ResultCache
from shared.service import ChatService
from shared.webhook_hooks import WebhookHooks
from shared.webhooks import WebhookDispatcher, WebhookSender, check_url, tenant_secret
from shared.webhooks.secrets import load_or_create_master

log = logging.getLogger(__name__)

SWEEP_GRACE_S = 5.0


@dataclass
class Services:
    """Everything a process needs, started and ready.

    `registry` holds this process's job metrics and the store's backlog (see shared/metrics.py);
    the API serves it on /metrics, an arq worker on WORKER_METRICS_PORT.
    """

    settings: Settings
    store: JobStore
    cache: ResultCache | None
    queue: JobQueue
    llm: LLMProvider
    webhook_master: str
    registry: CollectorRegistry = field(init=False, default_factory=CollectorRegistry)
    metrics: JobMetrics = field(init=False)
    backlog: Backlog = field(init=False)
    chat: ChatService = field(init=False)
    batches: BatchService = field(init=False)
    executor: JobExecutor = field(init=False)
    webhooks: WebhookDispatcher = field(init=False)
    _sender: WebhookSender = field(init=False)
    _background: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        s = self.settings
        self.metrics = JobMetrics(self.registry)
        self.backlog = Backlog(self.store)
        self.registry.register(self.backlog)
        self._sender = WebhookSender(
            timeout_s=s.webhook_timeout_s, allow_private=s.webhook_allow_private
        )
        self.webhooks = WebhookDispatcher(
            self.store, self._sender, schedule=s.retry_delays_s, secret_for=self.webhook_secret
        )
        hooks = WebhookHooks(self._check_webhook_url, self.webhooks.new_delivery)
        self.chat = ChatService(self.store, self.cache, self.queue, hooks, self._job_finished)
        self.batches = BatchService(self.store, self.cache, self.queue, hooks)
        self.executor = JobExecutor(
            self.store,
            self.cache,
            self.llm,
            job_timeout_s=s.job_timeout_s,
            max_attempts=s.job_max_attempts,
            retry_base_s=s.job_retry_base_s,
            cache_ttl_s=s.cache_ttl_s,
            on_finished=self._job_finished,
            hooks=hooks,
            metrics=self.metrics,
        )

    def webhook_secret(self, tenant: str) -> str:
        """The tenant's own `whsec_` signing secret."""
        return tenant_secret(self.webhook_master, tenant)

    async def _check_webhook_url(self, url: str) -> None:
        await check_url(url, allow_private=self.settings.webhook_allow_private)

    async def _job_finished(self, job: Job) -> None:
        if job.batch_id:
            await self.batches.check_completed(job.batch_id)

    def deliver_webhooks_in_background(self, interval_s: float = 0.5) -> None:
        """Run the webhook sweeper in this process until `close()`."""
        task = asyncio.create_task(self.webhooks.run_forever(interval_s, self._stop))
        self._background.append(task)

    async def handle_job(self, job_id: str) -> None:
        """In-process consumer: run the job, and put it back on the queue when it must retry."""
        try:
            delay = await self.executor.run(job_id)
        except Exception:  # e.g. the store is briefly locked: try again rather than drop it
            log.exception("job %s could not be run; retrying", job_id)
            delay = self.settings.job_retry_base_s
        if delay is not None:
            await self.queue.enqueue(job_id, delay_s=delay)

    async def recover_unfinished(self) -> None:
        """Embedded mode after a restart: this process is the only worker, so jobs left running
        died with the previous process: put them back to queued and enqueue all unfinished."""
        await self.store.requeue_running()
        await self.batches.close_finished()
        job_ids = await self.store.unfinished_job_ids(limit=10_000_000)
        if job_ids:
            log.info("re-enqueueing %d unfinished jobs", len(job_ids))
            await self.queue.enqueue_many(job_ids)

    async def close(self) -> None:
        self._stop.set()
        # A sweep in flight gets a moment to record its attempts; deliveries it leaves are still
        # pending in the store and are retried once their lease ends.
        if self._background:
            _, unfinished = await asyncio.wait(self._background, timeout=SWEEP_GRACE_S)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.queue.close()
        await self._sender.close()
        if self.cache is not None:
            await self.cache.close()
        await self.llm.close()
        await self.store.close()


class ServiceFactory:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: JobStore | None = None,
        cache: ResultCache | None = None,
        queue: JobQueue | None = None,
        llm: LLMProvider | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._store, self._cache, self._queue, self._llm = store, cache, queue, llm

    async def start(self, *, consume: bool, deliver_webhooks: bool | None = None) -> Services:
        """Build and start everything. `consume` starts in-process workers (embedded mode);
        `deliver_webhooks` (default: same as `consume`) runs the webhook sweeper here."""
        services = Services(
            settings=self.settings,
            store=self._store if self._store is not None else self.build_store(),
            cache=self._cache if self._cache is not None else self.build_cache(),
            queue=self._queue if self._queue is not None else self.build_queue(),
            llm=self._llm if self._llm is not None else self.build_llm(),
            webhook_master=self.webhook_master(),
        )
        await services.store.start()
        await services.queue.start(services.handle_job if consume else None)
        if consume:
            await services.recover_unfinished()
        if consume if deliver_webhooks is None else deliver_webhooks:
            services.deliver_webhooks_in_background()
        return services

    def webhook_master(self) -> str:
        """WEBHOOK_SIGNING_SECRET, or a per-install secret kept beside the SQLite database."""
        s = self.settings
        if s.webhook_signing_secret:
            return s.webhook_signing_secret
        if s.on_lambda:
            raise ValueError("WEBHOOK_SIGNING_SECRET must be set on Lambda")
        return load_or_create_master(Path(s.sqlite_path).parent / "webhook-master-secret")

    def build_store(self) -> JobStore:
        s = self.settings
        if s.resolved_store == "dynamodb":
            raise NotImplementedError("STORE_BACKEND=dynamodb is not built yet")
        from shared.adapters.store.sqlite import SqliteJobStore

        return SqliteJobStore(s.sqlite_path)

    def build_cache(self) -> ResultCache | None:
        s = self.settings
        kind = s.resolved_cache
        if kind == "none":
            return None
        if kind == "redis":
            from shared.adapters.cache.redis import RedisResultCache

            return RedisResultCache(_require(s.redis_url, "REDIS_URL", "CACHE_BACKEND=redis"))
        from shared.adapters.cache.memory import MemoryResultCache

        return MemoryResultCache(max_entries=s.cache_max_entries)

    def build_queue(self) -> JobQueue:
        s = self.settings
        kind = s.resolved_queue
        if kind == "arq":
            from shared.adapters.queue.arq import ArqJobQueue

            return ArqJobQueue(_require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        if kind == "sqs":
            raise NotImplementedError("QUEUE_BACKEND=sqs is not built yet")
        from shared.adapters.queue.inprocess import InProcessJobQueue

        return InProcessJobQueue(concurrency=s.worker_concurrency)

    def build_llm(self) -> LLMProvider:
        from shared.adapters.llm.build import build_llm

        return build_llm(self.settings)


def _require(value: str | None, name: str, because: str) -> str:
    if not value:
        raise ValueError(f"{name} must be set when {because}")
    return value
