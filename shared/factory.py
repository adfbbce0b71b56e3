"""The one composition root: adapters chosen from Settings (shared/adapters/choose.py), started on
one AsyncExitStack, and wired into the use cases. It only wires: running jobs, sweeping and
delivering belong to the use cases and shared/background.py.

The API calls it in its lifespan, workers in their startup, tests with overrides. Nothing connects
until `start()`; a failed start closes what had started, and one failing close does not skip the
rest.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace

from prometheus_client import CollectorRegistry

from shared.adapters.choose import Adapters
from shared.adapters.ratelimit import RateWindow
from shared.admission import Admission, LocalQueue
from shared.batches import BatchService
from shared.coalescing import Coalescing
from shared.config import Settings
from shared.execution import JobExecutor, requeueing_consumer
from shared.files import FileService
from shared.finished import FinishedJobs
from shared.heartbeats import WorkerKind
from shared.key_hashing import hasher_from
from shared.key_limits import KeyGate
from shared.key_service import KeyResolver, KeyService
from shared.metrics import Backlog, JobMetrics
from shared.ports import JobQueue, JobStreams, JobWakeups, LLMProvider, ResultCache, Store
from shared.retry import RetryPolicy
from shared.service import ChatService
from shared.services import Services
from shared.sweeps import Sweeper
from shared.usage_report import UsageService
from shared.webhooks import WebhookDispatcher, WebhookSender, check_url
from shared.webhooks.hooks import WebhookHooks
from shared.webhooks.key_events import BudgetWebhooks
from shared.webhooks.secrets import WebhookSecrets, masters_from

__all__ = ["ServiceFactory", "Services"]

log = logging.getLogger(__name__)
WEBHOOK_POLL_S = 0.5


def retry_policy(s: Settings) -> RetryPolicy:
    return RetryPolicy(
        s.job_retry_budget_s, s.job_retry_base_s, s.job_retry_max_delay_s, s.job_max_attempts
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
        wakeups: JobWakeups | None = None,
        streams: JobStreams | None = None,
    ) -> None:
        """Ready-made adapters (tests) are used instead of the ones Settings choose."""
        self.settings = settings or Settings()
        self.adapters = Adapters(self.settings)
        self.made = (store, cache, queue, llm, wakeups)
        self.made_streams = streams

    def build_rate_window(self) -> RateWindow:
        return self.adapters.rate_window()

    async def start(
        self,
        *,
        consume: bool,
        deliver_webhooks: bool | None = None,
        heartbeat: WorkerKind | None = None,
    ) -> Services:
        """Build and start everything. `consume` starts in-process workers (embedded mode);
        `deliver_webhooks` (default: same as `consume`) runs webhook delivery here;
        `heartbeat` (default: `embedded` when consuming) records this process as a worker."""
        async with AsyncExitStack() as stack:  # closes what started if anything below fails
            services = await self._start(stack, consume)
            services = replace(services, stack=stack.pop_all())  # outlives start()
        if consume if deliver_webhooks is None else deliver_webhooks:
            dispatcher = services.webhooks
            services.background.start(
                "webhooks", lambda stop: dispatcher.run_forever(WEBHOOK_POLL_S, stop)
            )
        if consume:  # embedded: this process is the worker, so it runs the sweep loop
            services.background.start("sweeps", services.sweeper.sweep_forever)
        kind = heartbeat or ("embedded" if consume else None)
        if kind is not None:
            services.background.start("heartbeat", services.heartbeat(kind).run_forever)
        return services

    async def _start(self, stack: AsyncExitStack, consume: bool) -> Services:
        a, (store, cache, queue, llm, wakeups) = self.adapters, self.made
        if a.aws_clients is not None:
            stack.push_async_callback(_logged, "AWS clients", a.aws_clients.close)
        store = store if store is not None else a.store()
        await _entered(stack, "store", store.start, store.close)
        cache = cache if cache is not None else a.cache()
        if cache is not None:
            stack.push_async_callback(_logged, "cache", cache.close)
        if llm is None:
            quota = a.provider_quota()
            stack.push_async_callback(_logged, "provider quota", quota.close)
            llm = a.llm(quota)
        await _entered(stack, "LLM", llm.start, llm.close)
        queue = queue if queue is not None else a.queue()
        wakeups = wakeups if wakeups is not None else a.wakeups()
        if wakeups is not None:
            stack.push_async_callback(_logged, "job wakeups", wakeups.close)
        streams = self.made_streams if self.made_streams is not None else a.streams()
        if streams is not None:
            stack.push_async_callback(_logged, "job streams", streams.close)
        services = self._wire(stack, store, cache, queue, llm, wakeups, streams)
        workers = a.workers()
        stack.push_async_callback(_logged, "worker registry", workers.close)
        services = replace(services, workers=workers, dead_letters=a.dead_letters())
        services = replace(services, keys=self._keys(store))
        if (files := a.files()) is not None:
            await _entered(stack, "file storage", files.start, files.close)
            services = replace(services, files=FileService(files))
        handler = requeueing_consumer(services.executor, queue) if consume else None
        await _entered(stack, "queue", lambda: queue.start(handler), queue.close)
        if consume:
            await services.sweeper.recover_after_restart()
        return services

    def _keys(self, store: Store) -> KeyService:
        """Run-time API keys; KEY_HASH_SECRET is required on Lambda (shared/key_hashing.py)."""
        s = self.settings
        return KeyService(store, KeyResolver(store, hasher_from(s), s.key_cache_ttl_s))

    # fmt: off
    def _wire(self, stack: AsyncExitStack, store: Store, cache: ResultCache | None,
              queue: JobQueue, llm: LLMProvider, wakeups: JobWakeups | None,
              streams: JobStreams | None) -> Services:
        # fmt: on
        s, registry = self.settings, CollectorRegistry()
        metrics, backlog = JobMetrics(registry), Backlog(store)
        registry.register(backlog)
        secrets = WebhookSecrets(masters_from(s))
        sender = WebhookSender(timeout_s=s.webhook_timeout_s, allow_private=s.webhook_allow_private)
        stack.push_async_callback(_logged, "webhook sender", sender.close)
        webhooks = WebhookDispatcher(
            store, sender, schedule=s.retry_delays_s, secret_for=secrets.signing
        )

        async def check(url: str) -> None:
            await check_url(url, allow_private=s.webhook_allow_private)

        hooks = WebhookHooks(check, webhooks.new_delivery)
        admission = Admission(
            store, s.max_queued_jobs, queue if isinstance(queue, LocalQueue) else None
        )
        coalescing = Coalescing(store, cache, queue, hooks)
        gate = self._key_gate(stack, store, sender, secrets)
        batches = BatchService(
            store, cache, queue, hooks, admission, s.models, metrics, coalescing, gate
        )
        finished = FinishedJobs(wakeups, batches, coalescing)
        chat = ChatService(
            store, cache, queue, hooks, finished, wakeups, admission, s.models, metrics, streams,
            gate=gate,
        )
        # fmt: off
        executor = JobExecutor(store, cache, llm, job_timeout_s=s.job_timeout_s,
                               retry=retry_policy(s), cache_ttl_s=s.cache_ttl_s,
                               on_finished=finished, hooks=hooks, metrics=metrics, models=s.models,
                               streams=streams, coalescing=coalescing)
        # fmt: on
        # fmt: off
        return Services(s, store, cache, queue, llm, wakeups, registry, metrics, backlog, chat,
                        batches, UsageService(store), executor, webhooks, secrets,
                        Sweeper(store, batches, queue, self.adapters.sweep_policy(queue)),
                        stack, self.adapters.sqs(queue), streams=streams)
        # fmt: on

    def _key_gate(
        self, stack: AsyncExitStack, store: Store, sender: WebhookSender, secrets: WebhookSecrets
    ) -> KeyGate:
        """Run-time API keys' limits (shared/key_limits.py); rpm in RATE_LIMIT's window."""
        s, alerts = self.settings, None
        if s.budget_webhook_url:
            alerts = BudgetWebhooks(
                s.budget_webhook_url, sender, schedule=s.retry_delays_s, secret_for=secrets.signing
            )
            stack.push_async_callback(_logged, "budget webhooks", alerts.close)
        return KeyGate(
            store,
            self.adapters.rate_window(),
            token_estimate=s.budget_token_estimate,
            alerts=alerts,
        )


Step = Callable[[], Awaitable[None]]


async def _entered(stack: AsyncExitStack, what: str, start: Step, close: Step) -> None:
    await start()
    stack.push_async_callback(_logged, what, close)


async def _logged(what: str, close: Step) -> None:
    """Close one part; a failure is logged, and the stack goes on closing the others."""
    try:
        await close()
    except Exception:
        log.exception("closing the %s failed", what)
