"""Job metrics for Prometheus: what the JobExecutor records, and the store's backlog.

Each process keeps them on a CollectorRegistry of its own (held by `Services`), never on
prometheus_client's global one, so several Services in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.models import JobStatus
from shared.ports import JobStore

log = logging.getLogger(__name__)

NO_PROVIDER = "none"
# One run is at most primary + fallback LLM timeouts (45 s by default).
RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0)
# Batches may wait hours behind each other.
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0)
UNFINISHED = (JobStatus.queued, JobStatus.running)


class JobMetrics:
    """The JobExecutor's recorder: jobs finished (by status and provider), retries, run times."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.finished = Counter(
            "chatjobs_jobs_finished",
            "Jobs a worker ran to an end, by status and by the provider that answered "
            "(for a failure: the provider that rejected the prompt, or 'none')",
            ["status", "provider"],
            registry=self.registry,
        )
        self.retries = Counter(
            "chatjobs_job_retries",
            "Runs that failed transiently and put their job back on the queue for another attempt",
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "chatjobs_job_run_seconds",
            "Time one run of a job took, from its claim to its recorded outcome",
            ["outcome"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.llm_seconds = Histogram(
            "chatjobs_llm_call_seconds",
            "Time the LLM took to answer, by the provider that answered "
            "(includes a failed primary before the fallback)",
            ["provider"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.submitted = Counter(
            "chatjobs_jobs_submitted",
            "Jobs submitted, single or in batches, by outcome: queued, cached (answered from "
            "the cache), rejected (503: the queue refused or the backlog is full), replayed "
            "(an Idempotency-Key repeat: no new job)",
            ["outcome"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "chatjobs_job_queue_wait_seconds",
            "Time from a job's submission to its first run",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )

        self.quota_waits = Counter(
            "chatjobs_provider_quota_waits",
            "Runs that put their job back on the queue, no attempt spent, because the provider's "
            "shared quota (calls or tokens per minute) had no room or it was paused after a 429 "
            "(and so had the fallback's, when there is one), by provider",
            ["provider"],
            registry=self.registry,
        )

    def quota_waited(self, providers: tuple[str, ...]) -> None:
        for provider in providers:
            self.quota_waits.labels(provider=provider).inc()

    def jobs_submitted(self, outcome: str, count: int = 1) -> None:
        if count:
            self.submitted.labels(outcome=outcome).inc(count)

    def job_started(self, waited_s: float) -> None:
        self.queue_wait.observe(max(waited_s, 0.0))

    def job_finished(self, status: JobStatus, provider: str, seconds: float) -> None:
        self.finished.labels(status=status.value, provider=provider).inc()
        self.run_seconds.labels(outcome=status.value).observe(seconds)

    def job_retried(self, seconds: float) -> None:
        self.retries.inc()
        self.run_seconds.labels(outcome="retried").observe(seconds)

    def llm_call(self, provider: str, seconds: float) -> None:
        self.llm_seconds.labels(provider=provider).observe(seconds)


class Backlog(Collector):
    """`chatjobs_jobs{status="queued"|"running"}`: the store's unfinished jobs, for scaling.

    A scrape handler awaits `refresh()` before rendering (the count is async, so the event loop
    never waits on the store; results are reused for `max_age_s`). It reports nothing until a
    refresh succeeds, so a registry that is never refreshed (an arq worker's) leaves it out
    rather than claim an empty queue, and so does a scrape while the store is failing.
    """

    def __init__(self, store: JobStore, *, max_age_s: float = 1.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._counts: dict[JobStatus, int] | None = None
        self._counted_at = -math.inf

    async def refresh(self) -> None:
        if time.monotonic() - self._counted_at < self.max_age_s:
            return
        try:
            self._counts = await self.store.count_unfinished()
        except Exception:
            log.warning("could not count unfinished jobs for /metrics", exc_info=True)
            self._counts = None
        self._counted_at = time.monotonic()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._counts is None:
            return
        family = self._family()
        for status in UNFINISHED:
            family.add_metric([status.value], self._counts.get(status, 0))
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "chatjobs_jobs", "Jobs in the store waiting or running, by status", labels=["status"]
        )
