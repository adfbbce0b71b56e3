"""The use cases, wired from adapters that have started: what ServiceFactory (the composition
root, shared/factory.py) hands over once every adapter is up. Construction only: no I/O, and
nothing runs; what must be closed (the webhook sender) goes on the root's stack.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from shared.adapters.choose import Adapters
from shared.admission import Admission, LocalQueue
from shared.batches import BatchService
from shared.coalescing import Coalescing
from shared.config import Settings
from shared.execution import JobExecutor
from shared.finished import FinishedJobs
from shared.key_hashing import hasher_from
from shared.key_limits import KeyGate
from shared.key_service import KeyResolver, KeyService
from shared.lifecycle import closes
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


@dataclass(frozen=True)
class Started:
    """The adapters the use cases are built on, each started."""

    store: Store
    cache: ResultCache | None
    queue: JobQueue
    llm: LLMProvider
    wakeups: JobWakeups | None
    streams: JobStreams | None
    local_queue: LocalQueue | None  # the queue, when it runs jobs in this process (embedded)


def retry_policy(s: Settings) -> RetryPolicy:
    return RetryPolicy(
        s.job_retry_budget_s, s.job_retry_base_s, s.job_retry_max_delay_s, s.job_max_attempts
    )


def wire(s: Settings, adapters: Adapters, stack: AsyncExitStack, a: Started) -> Services:
    """Every use case, sharing the adapters, the metrics registry and the webhook sender."""
    registry = CollectorRegistry()
    metrics, backlog = JobMetrics(registry), Backlog(a.store)
    registry.register(backlog)
    secrets = WebhookSecrets(masters_from(s))
    sender = WebhookSender(timeout_s=s.webhook_timeout_s, allow_private=s.webhook_allow_private)
    closes(stack, "webhook sender", sender.close)
    webhooks = WebhookDispatcher(
        a.store, sender, schedule=s.retry_delays_s, secret_for=secrets.signing
    )

    async def check(url: str) -> None:
        await check_url(url, allow_private=s.webhook_allow_private)

    hooks = WebhookHooks(check, webhooks.new_delivery)
    admission = Admission(a.store, s.max_queued_jobs, a.local_queue)
    coalescing = Coalescing(a.store, a.cache, a.queue, hooks)
    gate = key_gate(s, adapters, stack, a.store, sender, secrets)
    batches = BatchService(
        a.store, a.cache, a.queue, hooks, admission, s.models, metrics, coalescing, gate
    )
    finished = FinishedJobs(a.wakeups, batches, coalescing)
    chat = ChatService(
        a.store, a.cache, a.queue, hooks, finished, a.wakeups, admission, s.models, metrics,
        a.streams, gate=gate,
    )  # fmt: skip
    executor = JobExecutor(
        a.store, a.cache, a.llm, job_timeout_s=s.job_timeout_s, retry=retry_policy(s),
        cache_ttl_s=s.cache_ttl_s, on_finished=finished, hooks=hooks, metrics=metrics,
        models=s.models, streams=a.streams, coalescing=coalescing,
    )  # fmt: skip
    sweeper = Sweeper(a.store, batches, a.queue, adapters.sweep_policy(a.queue))
    return Services(
        s, a.store, a.cache, a.queue, a.llm, a.wakeups, registry, metrics, backlog, chat,
        batches, UsageService(a.store), executor, webhooks, secrets, sweeper, stack,
        adapters.sqs(a.queue), streams=a.streams, keys=keys(s, a.store),
    )  # fmt: skip


def keys(s: Settings, store: Store) -> KeyService:
    """Run-time API keys; KEY_HASH_SECRET is required on Lambda (shared/key_hashing.py)."""
    return KeyService(store, KeyResolver(store, hasher_from(s), s.key_cache_ttl_s))


def key_gate(
    s: Settings,
    adapters: Adapters,
    stack: AsyncExitStack,
    store: Store,
    sender: WebhookSender,
    secrets: WebhookSecrets,
) -> KeyGate:
    """Run-time API keys' limits (shared/key_limits.py); rpm in RATE_LIMIT's window."""
    alerts = None
    if s.budget_webhook_url:
        alerts = BudgetWebhooks(
            s.budget_webhook_url, sender, schedule=s.retry_delays_s, secret_for=secrets.signing
        )
        closes(stack, "budget webhooks", alerts.close)
    return KeyGate(
        store, adapters.rate_window(), token_estimate=s.budget_token_estimate, alerts=alerts
    )
