"""JobExecutor: runs one job for whichever queue delivered it (arq, in-process, SQS)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from shared.errors import PermanentLLMError, TransientLLMError
from shared.metrics import NO_PROVIDER, JobMetrics
from shared.models import ChatRequest, Completion, Job, JobError, JobStatus, utcnow
from shared.ports import JobFinished, JobStore, LLMProvider, ResultCache
from shared.webhook_hooks import WebhookHooks

log = logging.getLogger(__name__)


async def _ignore(job: Job) -> None:
    return None


class JobExecutor:
    """Claims a job with a compare-and-set, calls the LLM, and records the outcome.

    `run` returns None when the job needs nothing more, or a delay in seconds after which the
    caller's queue should deliver it again (a transient failure with attempts left). Outcomes
    are reported to `metrics` only when their write took effect, so a run fenced off by a later
    claim is not counted twice.
    """

    def __init__(
        self,
        store: JobStore,
        cache: ResultCache | None,
        llm: LLMProvider,
        *,
        job_timeout_s: float,
        max_attempts: int,
        retry_base_s: float,
        cache_ttl_s: int,
        on_finished: JobFinished = _ignore,
        hooks: WebhookHooks | None = None,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.llm = llm
        self.job_timeout_s = job_timeout_s
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.cache_ttl_s = cache_ttl_s
        self.on_finished = on_finished
        self.hooks = hooks or WebhookHooks()
        self.metrics = metrics or JobMetrics()

    async def run(self, job_id: str) -> float | None:
        now = utcnow()
        lease = now + timedelta(seconds=self.job_timeout_s + 5)
        job = await self.store.claim(job_id, lease_until=lease, now=now)
        if job is None:
            return await self.redelivery_delay(job_id)
        started = time.perf_counter()
        if job.attempts == 1:
            self.metrics.job_started(waited_s=(now - job.created_at).total_seconds())
        if job.attempts > self.max_attempts:
            await self._fail(
                job, started, "attempts_exhausted", "the job was delivered too many times"
            )
            return None
        try:
            completion = await self._complete(job.request)
        except PermanentLLMError as exc:
            await self._fail(job, started, "llm_rejected", f"{exc.provider}: {exc}", exc.provider)
            return None
        except (TransientLLMError, TimeoutError) as exc:
            wait = exc.retry_after_s if isinstance(exc, TransientLLMError) else None
            return await self._retry_or_fail(job, started, _describe(exc), wait)
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            return await self._retry_or_fail(job, started, f"internal error: {type(exc).__name__}")
        await self._succeed(job, started, completion)
        return None

    async def _complete(self, request: ChatRequest) -> Completion:
        started = time.perf_counter()
        completion = await asyncio.wait_for(self.llm.complete(request), self.job_timeout_s)
        self.metrics.llm_call(completion.provider, time.perf_counter() - started)
        return completion

    async def redelivery_delay(self, job_id: str) -> float | None:
        """For a job this delivery did not run. Finished, cancelled or unknown: None (acknowledge).
        Running under a lease: come back just after the lease ends, in case its holder has died
        (acknowledging would leave the job running forever)."""
        job = await self.store.get_job(job_id)
        if job is not None and job.status.is_terminal and job.batch_id:
            await self.on_finished(job)  # repeat the batch check a crash may have skipped
        if job is None or job.status is not JobStatus.running or job.lease_until is None:
            return None
        return max((job.lease_until - utcnow()).total_seconds(), 0.0) + 1.0

    def backoff_s(self, attempts: int) -> float:
        return float(self.retry_base_s * 2 ** max(attempts - 1, 0))

    async def _retry_or_fail(
        self, job: Job, started: float, reason: str, retry_after_s: float | None = None
    ) -> float | None:
        if job.attempts >= self.max_attempts:
            message = f"all LLM providers failed after {job.attempts} attempts: {reason}"
            await self._fail(job, started, "llm_unavailable", message)
            return None
        error = JobError(code="retrying", message=reason)
        requeued = await self.store.transition(
            job.id,
            [JobStatus.running],
            JobStatus.queued,
            if_attempts=job.attempts,
            error=error,
            lease_until=None,
        )
        if requeued is None:
            return None
        self.metrics.job_retried(time.perf_counter() - started)
        return max(self.backoff_s(job.attempts), retry_after_s or 0.0)  # honour the provider

    async def _succeed(self, job: Job, started: float, completion: Completion) -> None:
        now = utcnow()
        done = await self.store.transition(
            job.id,
            [JobStatus.running],
            JobStatus.succeeded,
            if_attempts=job.attempts,
            result=completion,
            error=None,
            completed_at=now,
            lease_until=None,
            webhook=self.hooks.delivery_for(job.webhook_url),
        )
        if done is None:
            return
        elapsed = time.perf_counter() - started
        self.metrics.job_finished(JobStatus.succeeded, completion.provider, elapsed)
        if job.cache_key and self.cache is not None:
            try:
                await self.cache.set(job.cache_key, completion, self.cache_ttl_s)
            except Exception:
                log.warning("cache write failed for job %s", job.id, exc_info=True)
        await self.on_finished(done)

    async def _fail(
        self, job: Job, started: float, code: str, message: str, provider: str = NO_PROVIDER
    ) -> None:
        """`provider`: the one that rejected the prompt, if one answered at all."""
        failed = await self.store.transition(
            job.id,
            [JobStatus.running],
            JobStatus.failed,
            if_attempts=job.attempts,
            error=JobError(code=code, message=message),
            completed_at=utcnow(),
            lease_until=None,
            webhook=self.hooks.delivery_for(job.webhook_url),
        )
        if failed is not None:
            log.warning("job %s failed: %s", job.id, message)
            self.metrics.job_finished(JobStatus.failed, provider, time.perf_counter() - started)
            await self.on_finished(failed)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the LLM call timed out"
    return str(exc)
