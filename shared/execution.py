"""JobExecutor: runs one job for whichever consumer delivered it (in-process, arq, SQS).

Every consumer calls `deliver(job_id)` and acts on its answer: None means acknowledge (the job
needs nothing more from this delivery), a number means deliver it again after that many seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from shared.answer_publisher import AnswerPublisher
from shared.coalescing import Coalescing
from shared.errors import PermanentLLMError, QuotaExceeded, TransientLLMError
from shared.job_writes import JobWrites
from shared.logs import bound
from shared.metrics import NO_PROVIDER, JobMetrics
from shared.model_catalog import ModelCatalog
from shared.models import Completion, Job, JobError, JobErrorCode, JobStatus, utcnow
from shared.ports import (
    JobFinished,
    JobHandler,
    JobQueue,
    JobStreams,
    LLMProvider,
    ResultCache,
    Store,
)
from shared.retry import RetryPolicy
from shared.transitions import AttemptFailure, JobOutcome
from shared.webhooks.hooks import WebhookHooks

log = logging.getLogger(__name__)

GUARD_MARGIN_S = 2.0  # the whole delivery may overrun the LLM timeout by this much
ERROR_RETRY_S = 5.0  # after an unexpected error (e.g. the store briefly unreachable)
QUOTA_JITTER_S = 1.0  # spread of the returns of jobs that waited for the same quota slot


@runtime_checkable
class Availability(Protocol):
    def unavailable_for_s(self) -> float:
        """0 when a provider may be tried now; else seconds until one may (circuits open)."""


@runtime_checkable
class QuotaAware(Protocol):
    async def quota_wait_s(self) -> float:
        """0 when a provider may be called now (circuit and shared quota); else seconds until
        one may, nothing taken (FallbackLLM)."""


async def _ignore(job: Job) -> None:
    return None


class JobExecutor:
    """Claims a job with a compare-and-set, calls the LLM, and records the outcome.

    Outcomes are reported to `metrics` only when their write took effect, so a run fenced off by
    a later claim is not counted twice. With `streams`, the job's followers are told each status
    change once written, and its answer as the provider streams it (shared/answer_publisher.py).
    """

    def __init__(
        self,
        store: Store,
        cache: ResultCache | None,
        llm: LLMProvider,
        *,
        job_timeout_s: float,
        retry: RetryPolicy,
        cache_ttl_s: int,
        on_finished: JobFinished = _ignore,
        hooks: WebhookHooks | None = None,
        metrics: JobMetrics | None = None,
        models: ModelCatalog | None = None,
        streams: JobStreams | None = None,
        coalescing: Coalescing | None = None,
    ) -> None:
        self.store = store
        self.writes = JobWrites(store)
        self.cache = cache
        self.llm = llm
        self.job_timeout_s = job_timeout_s
        self.retry = retry
        self.cache_ttl_s = cache_ttl_s
        self.on_finished = on_finished
        self.hooks = hooks or WebhookHooks()
        self.metrics = metrics or JobMetrics()
        self.models = models or ModelCatalog()
        self.publish = AnswerPublisher(streams)
        self.coalescing = coalescing

    @property
    def llm(self) -> LLMProvider:
        return self._llm

    @llm.setter
    def llm(self, llm: LLMProvider) -> None:
        self._llm = llm
        # checked once: isinstance against a runtime Protocol costs tens of microseconds
        self._availability = llm if isinstance(llm, Availability) else None
        self._quota = llm if isinstance(llm, QuotaAware) else None

    async def deliver(self, job_id: str) -> float | None:
        """Run one delivery of the job, bounded in time; never raises."""
        limit = self.job_timeout_s + GUARD_MARGIN_S
        try:
            async with asyncio.timeout(limit):
                return await self.run(job_id)
        except TimeoutError:
            log.error("job %s overran %.0f s; it will be delivered again", job_id, limit)
        except Exception:
            log.exception("job %s could not be run; it will be delivered again", job_id)
            return ERROR_RETRY_S
        try:
            return await self.redelivery_delay(job_id)
        except Exception:
            log.exception("job %s: could not read it back after an overrun", job_id)
            return ERROR_RETRY_S

    async def run(self, job_id: str) -> float | None:
        wait = self._providers_down_for()
        if wait > 0:  # no attempt spent while every provider's circuit is open
            return self.retry.jittered(wait)
        now = utcnow()
        lease = now + timedelta(seconds=self.job_timeout_s + 5)
        job = await self.writes.claim(job_id, lease_until=lease, now=now)
        if job is None:
            return await self.redelivery_delay(job_id)
        with bound(job_id=job.id, tenant=job.tenant, batch_id=job.batch_id):
            await self.publish.status(job)
            started = time.perf_counter()
            if job.attempts == 1 and not job.quota_waited_s:  # its first run
                queued_at = job.retried_at or job.created_at
                self.metrics.job_started(waited_s=(now - queued_at).total_seconds())
            if job.attempts > self.retry.max_attempts:
                message = "the job was delivered too many times"
                await self._fail(job, started, "attempts_exhausted", message)
                return None
            if self.coalescing is not None and await self._joined(job, started):
                return None
            return await self._attempt(job, started)

    async def _joined(self, job: Job, started: float) -> bool:
        """True when the job needs no LLM call: it joined an identical job in flight, or the
        cache answered it (shared/coalescing.py)."""
        assert self.coalescing is not None
        joined = await self.coalescing.join(job)
        if joined.following is not None:  # its stream's readers switch to the leader's
            await self.publish.status(joined.following)
        if joined.ended is not None:
            await self.on_finished(joined.ended)
        if joined.answer is not None:
            await self._succeed(job, started, joined.answer, cached=True)
        return joined.waits or joined.answer is not None

    async def _attempt(self, job: Job, started: float) -> float | None:
        try:
            completion = await self._complete(job)
        except PermanentLLMError as exc:
            message = f"{exc.provider}: {exc}"
            await self._fail(job, started, "llm_rejected", message, exc.provider, exc.provider)
            return None
        except QuotaExceeded as exc:
            return await self._wait_for_quota(job, exc)
        except (TransientLLMError, TimeoutError) as exc:
            wait = exc.retry_after_s if isinstance(exc, TransientLLMError) else None
            return await self._retry_or_fail(job, started, _failure(exc), wait)
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            return await self._retry_or_fail(job, started, _failure(exc))
        await self._succeed(job, started, completion)
        return None

    async def providers_wait_s(self) -> float:
        """For a consumer deciding whether to take more jobs: 0 when some provider may be
        called now, else the seconds until one may (its circuit, its shared quota, a 429's
        pause); nothing taken (docs/adr/0014)."""
        if self._quota is not None:
            return await self._quota.quota_wait_s()
        return self._providers_down_for()

    def _providers_down_for(self) -> float:
        return self._availability.unavailable_for_s() if self._availability else 0.0

    async def _complete(self, job: Job) -> Completion:
        started, request = time.perf_counter(), self.models.route(job.request)
        async with asyncio.timeout(self.job_timeout_s):  # no task of its own, unlike wait_for
            completion = await self.publish.answer(self.llm, job, request)
        self.metrics.llm_call(completion.provider, time.perf_counter() - started)
        return completion

    async def redelivery_delay(self, job_id: str) -> float | None:
        """For a job this delivery did not run. Finished, cancelled or unknown: None (acknowledge).
        Running under a lease: come back just after the lease ends, in case its holder has died
        (acknowledging would leave the job running forever). Queued but not due yet (a retry
        whose delay the queue could not hold): come back when it is due."""
        job = await self.store.get_job(job_id)
        if job is not None and job.status.is_terminal and job.batch_id:
            await self.on_finished(job)  # repeat the batch check a crash may have skipped
        if job is None:
            return None
        if job.waiting_on is not None and self.coalescing is not None:
            for ended in await self.coalescing.settle(job):  # its leader's end went unseen
                await self.on_finished(ended)
        if job.status is JobStatus.running and job.lease_until is not None:
            return _seconds_until(job.lease_until) + 1.0
        if job.status is JobStatus.queued and job.not_before is not None:
            return _seconds_until(job.not_before) + 0.1
        return None

    async def _retry_or_fail(
        self,
        job: Job,
        started: float,
        failure: AttemptFailure,
        retry_after_s: float | None = None,
    ) -> float | None:
        delay = self.retry.delay_s(job.attempts, retry_after_s)
        reason = failure.message
        if not self.retry.allows(job, delay):
            message = f"all LLM providers failed after {job.attempts} attempts: {reason}"
            await self._fail(job, started, "llm_unavailable", message, tried=failure.provider)
            return None
        not_before = utcnow() + timedelta(seconds=delay)
        note = JobError(code="retrying", message=_waiting(job.attempts, not_before, reason))
        requeued = await self.writes.requeue(
            job.id, attempt=job.attempts, note=note, not_before=not_before, failure=failure
        )
        if requeued is None:
            return None
        await self.publish.status(requeued)
        self.metrics.job_retried(time.perf_counter() - started)
        return delay

    async def _wait_for_quota(self, job: Job, exc: QuotaExceeded) -> float | None:
        """No provider could be called: back to the queue until a slot frees (with up to
        QUOTA_JITTER_S more, so the jobs that waited together do not all come back at once),
        the claim given back and the wait kept off the retry budget (docs/adr/0014)."""
        delay = exc.retry_after_s + self.retry.rng.uniform(0, QUOTA_JITTER_S)
        not_before = utcnow() + timedelta(seconds=delay)
        when = not_before.isoformat(timespec="seconds")
        note = JobError(code="retrying", message=f"waiting for a provider quota ({exc}); "
                        f"next try at {when}, no attempt spent")  # fmt: skip
        deferred = await self.writes.defer(
            job.id, attempt=job.attempts, note=note, not_before=not_before
        )
        if deferred is None:
            return None
        await self.publish.status(deferred)
        self.metrics.quota_waited(exc.providers)
        return delay

    async def _succeed(
        self, job: Job, started: float, completion: Completion, *, cached: bool = False
    ) -> None:
        outcome = JobOutcome(
            JobStatus.succeeded,
            expect=JobStatus.running,
            attempt=job.attempts,
            result=completion,
            webhook=self.hooks.delivery_for(job.webhook_url),
            cached=cached,
        )
        if not cached:
            await self._fill_cache(job, completion)
        done = await self.writes.finish(job.id, outcome)
        if done is None:
            return
        elapsed = time.perf_counter() - started
        self.metrics.job_finished(JobStatus.succeeded, completion.provider, elapsed)
        await self.publish.status(done)
        await self.on_finished(done)

    async def _fill_cache(self, job: Job, completion: Completion) -> None:
        """Before the job reads `succeeded`: a client that sees it done and sends the same prompt
        again gets the cached answer (the answer stays right for the prompt even if the job was
        cancelled meanwhile)."""
        if not job.cache_key or self.cache is None:
            return
        try:
            await self.cache.set(job.cache_key, completion, self.cache_ttl_s)
        except Exception:
            log.warning("cache write failed for job %s", job.id, exc_info=True)

    async def _fail(
        self,
        job: Job,
        started: float,
        code: JobErrorCode,
        message: str,
        provider: str = NO_PROVIDER,
        tried: str | None = None,
    ) -> None:
        """`provider`: the one that rejected the prompt, if one answered at all (for the
        metrics); `tried`: the one whose error ended the attempt (for the attempt log)."""
        outcome = JobOutcome(
            JobStatus.failed,
            expect=JobStatus.running,
            attempt=job.attempts,
            error=JobError(code=code, message=message),
            webhook=self.hooks.delivery_for(job.webhook_url),
            provider=tried,
        )
        failed = await self.writes.finish(job.id, outcome)
        if failed is not None:
            self.metrics.job_finished(JobStatus.failed, provider, time.perf_counter() - started)
            log.warning("job %s failed: %s", job.id, message)
            await self.publish.status(failed)
            await self.on_finished(failed)


def requeueing_consumer(executor: JobExecutor, queue: JobQueue) -> JobHandler:
    """A consumer for a queue with no redelivery of its own (in-process): a delay becomes a
    delayed enqueue of the same job."""

    async def consume(job_id: str) -> None:
        delay = await executor.deliver(job_id)
        if delay is not None:
            await queue.enqueue(job_id, delay_s=delay)

    return consume


def _seconds_until(moment: datetime) -> float:
    return max((moment - utcnow()).total_seconds(), 0.0)


def _waiting(attempts: int, not_before: datetime, reason: str) -> str:
    when = not_before.isoformat(timespec="seconds")
    return f"attempt {attempts} failed ({reason}); next attempt at {when}"


def _failure(exc: Exception) -> AttemptFailure:
    """What the attempt log keeps of an attempt's transient error (or crash)."""
    if isinstance(exc, TimeoutError):
        return AttemptFailure(code="timeout", message="the LLM call timed out")
    if not isinstance(exc, TransientLLMError):
        crash = f"internal error: {type(exc).__name__}"
        return AttemptFailure(code="internal_error", message=crash)
    code = f"http_{exc.status_code}" if exc.status_code else "provider_error"
    return AttemptFailure(code=code, message=str(exc), provider=exc.provider)
