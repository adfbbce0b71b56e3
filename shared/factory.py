"""ServiceFactory: the one composition root. Chooses and wires adapters from Settings.

The API calls it in its lifespan, the worker in its startup hook, tests with overrides. Drivers are
imported only in the branch that needs them, and nothing connects until `start()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.config import Settings
from shared.execution import JobExecutor
from shared.models import JobStatus
from shared.ports import JobQueue, JobStore, LLMProvider, ResultCache
from shared.service import ChatService

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a process needs, started and ready."""

    settings: Settings
    store: JobStore
    cache: ResultCache | None
    queue: JobQueue
    llm: LLMProvider
    chat: ChatService = field(init=False)
    executor: JobExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.chat = ChatService(self.store, self.cache, self.queue)
        self.executor = JobExecutor(
            self.store,
            self.cache,
            self.llm,
            job_timeout_s=self.settings.job_timeout_s,
            max_attempts=self.settings.job_max_attempts,
            retry_base_s=self.settings.job_retry_base_s,
            cache_ttl_s=self.settings.cache_ttl_s,
        )

    async def handle_job(self, job_id: str) -> None:
        """In-process consumer: run the job, and put it back on the queue when it must retry."""
        delay = await self.executor.run(job_id)
        if delay is not None:
            await self.queue.enqueue(job_id, delay_s=delay)

    async def recover_unfinished(self) -> None:
        """Embedded mode after a restart: this process is the only worker, so jobs left running
        died with the previous process: put them back to queued and enqueue all unfinished."""
        job_ids = await self.store.unfinished_job_ids()
        for job_id in job_ids:
            await self.store.transition(
                job_id, [JobStatus.running], JobStatus.queued, lease_until=None
            )
        if job_ids:
            log.info("re-enqueueing %d unfinished jobs", len(job_ids))
            await self.queue.enqueue_many(job_ids)

    async def close(self) -> None:
        await self.queue.close()
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

    async def start(self, *, consume: bool) -> Services:
        """Build and start everything. `consume` starts in-process workers (embedded mode)."""
        services = Services(
            settings=self.settings,
            store=self._store or self.build_store(),
            cache=self._cache if self._cache is not None else self.build_cache(),
            queue=self._queue or self.build_queue(),
            llm=self._llm or self.build_llm(),
        )
        await services.store.start()
        await services.queue.start(services.handle_job if consume else None)
        if consume:
            await services.recover_unfinished()
        return services

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
