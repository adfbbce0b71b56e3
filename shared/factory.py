"""ServiceFactory: the one composition root. Chooses and wires adapters from Settings.

The API calls it in its lifespan, workers in their startup, tests with overrides. Drivers are
imported only in the branch that needs them, nothing connects until `start()`, and everything
started is closed through one AsyncExitStack: a failed start closes what had started, and one
failing close does not skip the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from shared.adapters.aws.clients import AwsClients
from shared.adapters.ratelimit import RateWindow
from shared.admission import Admission, LocalQueue
from shared.batches import BatchService
from shared.config import Settings
from shared.execution import JobExecutor, requeueing_consumer
from shared.metrics import Backlog, JobMetrics
from shared.models import Job, utcnow
from shared.ports import JobEvents, JobQueue, LLMProvider, ResultCache, Store
from shared.retry import RetryPolicy
from shared.service import ChatService
from shared.sweeps import Sweeper
from shared.usage_report import UsageService
from shared.webhook_hooks import WebhookHooks
from shared.webhooks import WebhookDispatcher, WebhookSender, check_url
from shared.webhooks.secrets import MasterSecrets, TenantSecrets, load_or_create_master

log = logging.getLogger(__name__)

SWEEP_GRACE_S = 5.0


@dataclass
class Services:
    """Everything a process needs, started and ready; `close()` stops it all.

    `registry` holds this process's job metrics and the store's backlog (see shared/metrics.py);
    the API serves it on /metrics, a worker on WORKER_METRICS_PORT.
    """

    settings: Settings
    store: Store
    cache: ResultCache | None
    queue: JobQueue
    llm: LLMProvider
    webhook_masters: MasterSecrets
    events: JobEvents | None = None  # None: long-polls poll the store
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: JobMetrics = field(init=False)
    backlog: Backlog = field(init=False)
    chat: ChatService = field(init=False)
    batches: BatchService = field(init=False)
    usage: UsageService = field(init=False)
    executor: JobExecutor = field(init=False)
    webhooks: WebhookDispatcher = field(init=False)
    sweeper: Sweeper = field(init=False)
    sender: WebhookSender = field(init=False)
    stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)

    def __post_init__(self) -> None:
        s = self.settings
        self.metrics = JobMetrics(self.registry)
        self.backlog = Backlog(self.store)
        self.registry.register(self.backlog)
        self.sender = WebhookSender(
            timeout_s=s.webhook_timeout_s, allow_private=s.webhook_allow_private
        )
        self.webhooks = WebhookDispatcher(
            self.store, self.sender, schedule=s.retry_delays_s, secret_for=self._signing_secrets
        )
        hooks = WebhookHooks(self._check_webhook_url, self.webhooks.new_delivery)
        local = self.queue if isinstance(self.queue, LocalQueue) else None
        admission = Admission(self.store, s.max_queued_jobs, local)
        self.chat = ChatService(
            self.store,
            self.cache,
            self.queue,
            hooks,
            self._job_finished,
            self.events,
            admission,
            s.models,
            self.metrics,
        )
        self.batches = BatchService(
            self.store, self.cache, self.queue, hooks, admission, s.models, self.metrics
        )
        self.usage = UsageService(self.store)
        self.executor = JobExecutor(
            self.store,
            self.cache,
            self.llm,
            job_timeout_s=s.job_timeout_s,
            retry=retry_policy(s),
            cache_ttl_s=s.cache_ttl_s,
            on_finished=self._job_finished,
            hooks=hooks,
            metrics=self.metrics,
            models=s.models,
        )
        self.sweeper = Sweeper(self.store, self.batches, self.queue)

    def webhook_secret(self, tenant: str) -> str:
        """The tenant's own `whsec_` signing secret."""
        return self.webhook_secrets(tenant).secret

    def webhook_secrets(self, tenant: str) -> TenantSecrets:
        """The tenant's secret and, during a rotation, the previous one and its expiry."""
        return self.webhook_masters.for_tenant(tenant, utcnow())

    def _signing_secrets(self, tenant: str) -> tuple[str, ...]:
        return self.webhook_secrets(tenant).signing

    async def _check_webhook_url(self, url: str) -> None:
        await check_url(url, allow_private=self.settings.webhook_allow_private)

    async def _job_finished(self, job: Job) -> None:
        if self.events is not None:
            await self.events.notify([job.id])
        if job.batch_id:
            await self.batches.check_completed(job.batch_id)

    def run_in_background(
        self, name: str, loop: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    ) -> None:
        """Run `loop(stop)` until `close()` sets `stop` (then give it SWEEP_GRACE_S to end)."""
        stop = asyncio.Event()
        task = asyncio.create_task(loop(stop), name=name)

        async def end() -> None:
            stop.set()
            done, _ = await asyncio.wait([task], timeout=SWEEP_GRACE_S)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.stack.push_async_callback(end)

    async def close(self) -> None:
        await self.stack.aclose()


def retry_policy(s: Settings) -> RetryPolicy:
    return RetryPolicy(
        budget_s=s.job_retry_budget_s,
        base_s=s.job_retry_base_s,
        max_delay_s=s.job_retry_max_delay_s,
        max_attempts=s.job_max_attempts,
    )


class ServiceFactory:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        cache: ResultCache | None = None,
        queue: JobQueue | None = None,
        llm: LLMProvider | None = None,
        events: JobEvents | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._store, self._cache, self._queue, self._llm = store, cache, queue, llm
        self._events = events
        self._aws: AwsClients | None = None
        if self._aws_needed():  # built now (it connects on first use), shared by every adapter
            s = self.settings
            self._aws = AwsClients(endpoint_url=s.aws_endpoint_url, region=s.aws_region)

    async def start(self, *, consume: bool, deliver_webhooks: bool | None = None) -> Services:
        """Build and start everything. `consume` starts in-process workers (embedded mode);
        `deliver_webhooks` (default: same as `consume`) runs the webhook sweeper here."""
        async with AsyncExitStack() as stack:  # closes what started if anything below fails
            services = await self._start(stack, consume)
            services.stack = stack.pop_all()
        if consume if deliver_webhooks is None else deliver_webhooks:
            webhooks = services.webhooks
            services.run_in_background("webhooks", lambda stop: webhooks.run_forever(0.5, stop))
        if consume:  # embedded: no worker sweeps, so this process purges what has expired
            services.run_in_background("retention", services.sweeper.purge_forever)
        return services

    async def _start(self, stack: AsyncExitStack, consume: bool) -> Services:
        if self._aws is not None:
            stack.push_async_callback(_logged, "AWS clients", self._aws.close)
        store = self._store if self._store is not None else self.build_store()
        await store.start()
        stack.push_async_callback(_logged, "store", store.close)
        cache = self._cache if self._cache is not None else self.build_cache()
        if cache is not None:
            stack.push_async_callback(_logged, "cache", cache.close)
        llm = self._llm if self._llm is not None else self.build_llm()
        await llm.start()
        stack.push_async_callback(_logged, "LLM", llm.close)
        queue = self._queue if self._queue is not None else self.build_queue()
        events = self._events if self._events is not None else self.build_events()
        if events is not None:
            stack.push_async_callback(_logged, "job events", events.close)
        masters = self.webhook_masters()
        services = Services(self.settings, store, cache, queue, llm, masters, events)
        stack.push_async_callback(_logged, "webhook sender", services.sender.close)
        handler = requeueing_consumer(services.executor, queue) if consume else None
        await queue.start(handler)
        stack.push_async_callback(_logged, "queue", queue.close)
        if consume:
            await services.sweeper.recover_after_restart()
        return services

    def _aws_needed(self) -> bool:
        s = self.settings
        kinds = (s.resolved_store, s.resolved_queue, s.resolved_cache)
        return any(k in ("dynamodb", "sqs") for k in kinds)

    def build_rate_window(self) -> RateWindow:
        """The window RATE_LIMIT and AUTH_FAILURE_LIMIT are counted in: Redis with REDIS_URL
        (every API process shares it), DynamoDB in the AWS layout (Lambda containers share no
        memory), else this process's memory."""
        s = self.settings
        if s.redis_url:
            from shared.adapters.ratelimit.redis import RedisRateWindow

            return RedisRateWindow(s.redis_url)
        if s.resolved_store == "dynamodb":
            from shared.adapters.ratelimit.dynamodb import DynamoDbRateWindow

            return DynamoDbRateWindow(self.aws, s.dynamodb_table)
        from shared.adapters.ratelimit.memory import MemoryRateWindow

        return MemoryRateWindow()

    @property
    def aws(self) -> AwsClients:
        if self._aws is None:
            raise RuntimeError("no AWS backend is configured")
        return self._aws

    def webhook_masters(self) -> MasterSecrets:
        """The master secret and, during a rotation, WEBHOOK_SIGNING_SECRET_PREVIOUS."""
        s = self.settings
        previous = s.webhook_signing_secret_previous
        return MasterSecrets(
            self.webhook_master(),
            previous.get_secret_value() if previous else None,
            s.webhook_signing_secret_previous_expires_at,
        )

    def webhook_master(self) -> str:
        """WEBHOOK_SIGNING_SECRET, or a per-install secret kept beside the SQLite database."""
        s = self.settings
        if s.webhook_signing_secret:
            return s.webhook_signing_secret.get_secret_value()
        if s.on_lambda:
            raise ValueError("WEBHOOK_SIGNING_SECRET must be set on Lambda")
        return load_or_create_master(Path(s.sqlite_path).parent / "webhook-master-secret")

    def build_store(self) -> Store:
        s = self.settings
        if s.resolved_store == "dynamodb":
            from shared.adapters.store.dynamodb import DynamoDbJobStore

            return DynamoDbJobStore(self.aws, s.dynamodb_table, retention=s.job_retention)
        from shared.adapters.store.sqlite import SqliteJobStore

        return SqliteJobStore(s.sqlite_path, retention=s.job_retention)

    def build_cache(self) -> ResultCache | None:
        s = self.settings
        kind = s.resolved_cache
        if kind == "none":
            return None
        if kind == "redis":
            from shared.adapters.cache.redis import RedisResultCache

            return RedisResultCache(_require(s.redis_url, "REDIS_URL", "CACHE_BACKEND=redis"))
        if kind == "dynamodb":
            from shared.adapters.cache.dynamodb import DynamoDbResultCache

            return DynamoDbResultCache(self.aws, s.dynamodb_table)
        from shared.adapters.cache.memory import MemoryResultCache

        return MemoryResultCache(max_entries=s.cache_max_entries)

    def build_queue(self) -> JobQueue:
        s = self.settings
        kind = s.resolved_queue
        if kind == "arq":
            from shared.adapters.queue.arq import ArqJobQueue

            return ArqJobQueue(_require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        if kind == "sqs":
            from shared.adapters.queue.sqs import SqsJobQueue

            url = _require(s.sqs_queue_url, "SQS_QUEUE_URL", "QUEUE_BACKEND=sqs")
            return SqsJobQueue(self.aws, url, s.sqs_batch_queue_url)
        from shared.adapters.queue.inprocess import InProcessJobQueue

        return InProcessJobQueue(concurrency=s.worker_concurrency)

    def build_events(self) -> JobEvents | None:
        """Long-poll wake-ups: in this process when it runs the jobs, over Redis when arq
        workers do; None with SQS (the store is polled briefly instead)."""
        s = self.settings
        kind = s.resolved_queue
        if kind == "inprocess":
            from shared.adapters.events.local import LocalJobEvents

            return LocalJobEvents()
        if kind == "arq":
            from shared.adapters.events.redis import RedisJobEvents

            return RedisJobEvents(_require(s.redis_url, "REDIS_URL", "QUEUE_BACKEND=arq"))
        return None

    def build_llm(self) -> LLMProvider:
        from shared.adapters.llm.build import build_llm

        return build_llm(self.settings)


async def _logged(what: str, close: Callable[[], Awaitable[None]]) -> None:
    """Close one part; a failure is logged, and the stack goes on closing the others."""
    try:
        await close()
    except Exception:
        log.exception("closing the %s failed", what)


def _require(value: str | None, name: str, because: str) -> str:
    if not value:
        raise ValueError(f"{name} must be set when {because}")
    return value
