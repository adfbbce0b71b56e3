"""Services: what the composition root (shared/factory.py) hands a process, started and ready.

A frozen record of the started adapters and the use cases wired to them: no behaviour of its own
but `close()`, which closes the one AsyncExitStack everything was started on.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from shared.adapters.llm.fallback import provider_health
from shared.admin import AdminService
from shared.background import BackgroundTasks
from shared.batches import BatchService
from shared.config import ANONYMOUS_TENANT, Settings
from shared.dead_letters import NoDeadLetters
from shared.execution import JobExecutor
from shared.files import FileService
from shared.heartbeats import Heartbeat, WorkerKind
from shared.key_service import KeyService
from shared.metrics import Backlog, JobMetrics
from shared.ports import (
    DeadLetters,
    JobQueue,
    JobStreams,
    JobWakeups,
    LLMProvider,
    ResultCache,
    Store,
    WorkerRegistry,
)
from shared.service import ChatService
from shared.sweeps import Sweeper
from shared.usage_report import UsageService
from shared.webhooks import WebhookDispatcher
from shared.webhooks.secrets import WebhookSecrets

if TYPE_CHECKING:
    from shared.adapters.queue.sqs import SqsJobQueue


@dataclass(frozen=True)
class Services:
    """Everything a process needs, started and ready; `close()` stops it all. `registry` holds
    this process's job metrics and the store's backlog (served on /metrics)."""

    settings: Settings
    store: Store
    cache: ResultCache | None
    queue: JobQueue
    llm: LLMProvider
    wakeups: JobWakeups | None  # None: long-polls poll the store
    registry: CollectorRegistry
    metrics: JobMetrics
    backlog: Backlog
    chat: ChatService
    batches: BatchService
    usage: UsageService
    executor: JobExecutor
    webhooks: WebhookDispatcher
    webhook_secrets: WebhookSecrets
    sweeper: Sweeper
    stack: AsyncExitStack
    sqs: SqsJobQueue | None = None  # the queue again, typed, when it is SQS (the SQS consumers)
    files: FileService | None = None  # None: no file storage here (Lambda without FILES_BUCKET)
    streams: JobStreams | None = None  # None: followers of a job read its record
    workers: WorkerRegistry | None = None  # workers' heartbeats (shared/heartbeats.py)
    keys: KeyService | None = None  # run-time API keys (None only where a test wired none)
    dead_letters: DeadLetters = field(default_factory=NoDeadLetters)  # SQS's DLQs on AWS

    @property
    def admin(self) -> AdminService:
        """The operator's reads and actions across tenants (the known tenants: API_KEYS')."""
        s = self.settings
        tenants = list(dict.fromkeys(k.tenant for k in s.api_keys)) or [ANONYMOUS_TENANT]
        return AdminService(
            self.store,
            self.chat,
            self.batches,
            self.webhooks,
            self.workers,
            tenants,
            dead_letters=self.dead_letters,
        )

    def heartbeat(self, kind: WorkerKind) -> Heartbeat:
        """This process's heartbeat as a worker of `kind` (its LLM providers' health with it)."""
        if self.workers is None:
            raise RuntimeError("no worker registry was started")
        llm = self.llm
        return Heartbeat(
            self.workers, kind, self.settings.worker_heartbeat_s, lambda: provider_health(llm)
        )

    @property
    def background(self) -> BackgroundTasks:
        """Loops that run until `close()` (started on the same stack)."""
        return BackgroundTasks(self.stack)

    async def close(self) -> None:
        await self.stack.aclose()
