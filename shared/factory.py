"""The one composition root: adapters chosen from Settings (shared/adapters/choose.py), started on
one AsyncExitStack, and wired into the use cases (shared/use_cases.py). It only wires: running
jobs, sweeping and delivering belong to the use cases and shared/background.py.

The API calls it in its lifespan, workers in their startup, tests with overrides. Nothing connects
until `start()`; a failed start closes what had started, and one failing close does not skip the
rest (shared/lifecycle.py).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import replace

from shared.adapters.choose import Adapters
from shared.adapters.ratelimit import RateWindow
from shared.admission import LocalQueue
from shared.config import Settings
from shared.execution import requeueing_consumer
from shared.files import FileService
from shared.heartbeats import WorkerKind
from shared.lifecycle import closes, entered
from shared.ports import JobQueue, JobStreams, JobWakeups, LLMProvider, ResultCache, Store
from shared.services import Services
from shared.use_cases import Started, wire

__all__ = ["ServiceFactory", "Services"]

WEBHOOK_POLL_S = 0.5


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
        a = self.adapters
        if a.aws_clients is not None:
            closes(stack, "AWS clients", a.aws_clients.close)
        started = await self._adapters(stack)
        services = wire(self.settings, a, stack, started)
        workers = a.workers()
        closes(stack, "worker registry", workers.close)
        services = replace(services, workers=workers, dead_letters=a.dead_letters())
        if (files := a.files()) is not None:
            await entered(stack, "file storage", files.start, files.close)
            services = replace(services, files=FileService(files))
        queue = started.queue
        handler = requeueing_consumer(services.executor, queue) if consume else None
        await entered(stack, "queue", lambda: queue.start(handler), queue.close)
        if consume:
            await services.sweeper.recover_after_restart()
        return services

    async def _adapters(self, stack: AsyncExitStack) -> Started:
        """The adapters the use cases need, started (the queue's start comes last: it may
        begin consuming at once)."""
        a, (store, cache, queue, llm, wakeups) = self.adapters, self.made
        store = store if store is not None else a.store()
        await entered(stack, "store", store.start, store.close)
        cache = cache if cache is not None else a.cache()
        if cache is not None:
            closes(stack, "cache", cache.close)
        if llm is None:
            quota = a.provider_quota()
            closes(stack, "provider quota", quota.close)
            llm = a.llm(quota)
        await entered(stack, "LLM", llm.start, llm.close)
        queue = queue if queue is not None else a.queue()
        wakeups = wakeups if wakeups is not None else a.wakeups()
        if wakeups is not None:
            closes(stack, "job wakeups", wakeups.close)
        streams = self.made_streams if self.made_streams is not None else a.streams()
        if streams is not None:
            closes(stack, "job streams", streams.close)
        local = queue if isinstance(queue, LocalQueue) else None
        return Started(store, cache, queue, llm, wakeups, streams, local)
