"""JobExecutor: claim, run, retry, fail, and the metrics it records — with fakes at the ports."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from shared.adapters.llm.circuit import CircuitBreaker
from shared.adapters.llm.fallback import FallbackLLM
from shared.errors import PermanentLLMError, TransientLLMError
from shared.execution import JobExecutor
from shared.job_writes import JobWrites
from shared.metrics import JobMetrics
from shared.models import ChatRequest, Completion, Job, JobCreate, JobStatus, utcnow
from shared.retry import RetryPolicy
from shared.service import ChatService
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM, FakeResultCache


class NoJitter(random.Random):
    """Jitter at its ceiling, so delays are exact in assertions."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Harness:
    def __init__(self, max_attempts: int = 3, budget_s: float = 900) -> None:
        self.store, self.cache, self.queue = FakeJobStore(), FakeResultCache(), FakeJobQueue()
        self.llm = FakeLLM("gemini")
        self.finished: list[str] = []
        self.metrics = JobMetrics()
        self.chat = ChatService(self.store, self.cache, self.queue)
        self.executor = JobExecutor(
            self.store,
            self.cache,
            self.llm,
            job_timeout_s=5,
            retry=RetryPolicy(
                budget_s=budget_s,
                base_s=1,
                max_delay_s=8,
                max_attempts=max_attempts,
                rng=NoJitter(),
            ),
            cache_ttl_s=60,
            on_finished=self._record,
            metrics=self.metrics,
        )

    async def _record(self, job: Job) -> None:
        self.finished.append(job.status.value)

    async def submit(self, prompt: str = "abc") -> str:
        body = JobCreate.model_validate({"messages": [{"role": "user", "content": prompt}]})
        return (await self.chat.submit("t1", body)).id

    def make_due(self, job_id: str) -> None:
        """Time passes: the job's retry delay is over."""
        job = self.store.jobs[job_id]
        self.store.jobs[job_id] = job.model_copy(update={"not_before": None})

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def finished_count(self, status: str, provider: str) -> float:
        return self.metric("chatjobs_jobs_finished_total", status=status, provider=provider)


async def test_success_records_result_fills_cache_and_notifies() -> None:
    h = Harness()
    job_id = await h.submit("abc")
    assert await h.executor.run(job_id) is None
    job = h.store.jobs[job_id]
    assert job.status is JobStatus.succeeded and job.attempts == 1
    assert job.result is not None and job.result.content == "cba"
    assert job.result.provider == "gemini" and job.completed_at is not None
    assert job.cache_key in h.cache.entries
    assert h.finished == ["succeeded"]


async def test_redelivery_of_a_finished_job_does_nothing() -> None:
    h = Harness()
    job_id = await h.submit()
    await h.executor.run(job_id)
    assert await h.executor.run(job_id) is None
    assert len(h.llm.requests) == 1 and h.store.jobs[job_id].attempts == 1


async def test_transient_failure_requeues_with_backoff_then_fails_when_exhausted() -> None:
    h = Harness(max_attempts=2)
    job_id = await h.submit()
    h.llm.errors = [TransientLLMError("HTTP 503", provider="gemini")] * 2
    assert await h.executor.run(job_id) == 1.0
    queued = h.store.jobs[job_id]
    assert queued.status is JobStatus.queued and queued.not_before is not None
    assert queued.error is not None and queued.error.code == "retrying"
    assert "HTTP 503" in queued.error.message and "next attempt at" in queued.error.message
    h.make_due(job_id)
    assert await h.executor.run(job_id) is None
    job = h.store.jobs[job_id]
    assert job.status is JobStatus.failed and job.attempts == 2
    assert job.error is not None and job.error.code == "llm_unavailable"
    assert "HTTP 503" in job.error.message and "2 attempts" in job.error.message
    assert h.finished == ["failed"]


async def test_permanent_failure_fails_at_once() -> None:
    h = Harness()
    job_id = await h.submit()
    h.llm.errors = [PermanentLLMError("prompt blocked: SAFETY", provider="gemini")]
    assert await h.executor.run(job_id) is None
    job = h.store.jobs[job_id]
    assert job.status is JobStatus.failed and job.attempts == 1
    assert job.error is not None and job.error.code == "llm_rejected"
    assert "SAFETY" in job.error.message


async def test_a_cancelled_job_is_never_run() -> None:
    h = Harness()
    job_id = await h.submit()
    await h.chat.cancel("t1", job_id)
    assert await h.executor.run(job_id) is None
    assert h.llm.requests == []


@pytest.mark.parametrize("attempts,expected", [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)])
def test_backoff_doubles_up_to_its_cap(attempts: int, expected: float) -> None:
    assert Harness().executor.retry.delay_s(attempts) == expected


def test_backoff_is_jittered_between_half_and_all() -> None:
    policy = RetryPolicy(budget_s=900, base_s=2, max_delay_s=60, max_attempts=30)
    delays = {policy.delay_s(3) for _ in range(50)}
    assert all(4 <= d <= 8 for d in delays) and len(delays) > 1


async def test_a_retry_that_comes_back_early_waits_for_its_time() -> None:
    h = Harness()
    job_id = await h.submit()
    h.llm.errors = [TransientLLMError("HTTP 503", provider="gemini")]
    assert await h.executor.run(job_id) == 1.0
    early = await h.executor.run(job_id)  # e.g. SQS capped the delay: the message is early
    assert early is not None and 0 < early <= 1.2
    assert len(h.llm.requests) == 1 and h.store.jobs[job_id].attempts == 1


async def test_retries_stop_when_the_budget_is_spent() -> None:
    h = Harness(max_attempts=30, budget_s=2.5)
    job_id = await h.submit()
    h.llm.errors = [TransientLLMError("HTTP 503", provider="gemini")] * 5
    assert await h.executor.run(job_id) == 1.0  # 1 s fits in 2.5 s
    h.make_due(job_id)
    assert await h.executor.run(job_id) == 2.0  # about 2 s later than creation still fits
    h.make_due(job_id)
    assert await h.executor.run(job_id) is None  # 4 s more would overrun the budget
    job = h.store.jobs[job_id]
    assert job.status is JobStatus.failed and job.attempts == 3
    assert job.error is not None and job.error.code == "llm_unavailable"


async def test_no_attempt_is_spent_while_every_circuit_is_open() -> None:
    h = Harness()
    clock = [0.0]
    primary, fallback = CircuitBreaker(1, 30, clock=lambda: clock[0]), CircuitBreaker(1, 30)
    h.executor.llm = FallbackLLM(h.llm, FakeLLM("openrouter"), primary, fallback)
    primary.record_failure()
    fallback.record_failure()
    job_id = await h.submit()
    wait = await h.executor.run(job_id)
    assert wait is not None and 15 <= wait <= 30  # until the probe, jittered
    assert h.store.jobs[job_id].attempts == 0 and h.llm.requests == []
    clock[0] = 31  # the primary may probe again
    assert await h.executor.run(job_id) is None
    assert h.store.jobs[job_id].status is JobStatus.succeeded


async def test_a_job_held_by_a_live_worker_is_left_alone_but_a_dead_ones_runs_again() -> None:
    from datetime import timedelta

    from shared.models import utcnow

    h = Harness()
    job_id = await h.submit()
    now = utcnow()
    assert await JobWrites(h.store).claim(job_id, lease_until=now + timedelta(seconds=60), now=now)
    # A duplicate delivery while the lease is live: not run, but asked back after the lease.
    delay = await h.executor.run(job_id)
    assert delay is not None and 55 < delay <= 62
    assert h.llm.requests == []
    held = h.store.jobs[job_id]
    h.store.jobs[job_id] = held.model_copy(update={"lease_until": now - timedelta(seconds=1)})
    assert await h.executor.run(job_id) is None  # the worker died: its lease ran out
    job = h.store.jobs[job_id]
    assert job.status is JobStatus.succeeded and job.attempts == 2


async def test_a_redelivered_batch_job_closes_a_batch_whose_check_was_missed() -> None:
    from shared.batches import BatchService
    from shared.models import BatchItem, BatchStatus, Message

    h = Harness()
    batches = BatchService(h.store, h.cache, h.queue)
    batch = await batches.create(
        "t1", [BatchItem(custom_id="a", messages=[Message(role="user", content="x")])]
    )
    (job_id,) = h.queue.pending
    await h.executor.run(job_id)  # finishes, but nothing checks the batch (the crash)
    assert (await batches.get("t1", batch.id)).status is BatchStatus.in_progress

    async def check_batch(job: Job) -> None:
        assert job.batch_id is not None
        await batches.check_completed(job.batch_id)

    h.executor.on_finished = check_batch
    assert await h.executor.run(job_id) is None  # the queue delivers it again
    closed = await batches.get("t1", batch.id)
    assert closed.status is BatchStatus.completed and closed.counts.succeeded == 1
    assert len(h.llm.requests) == 1


async def test_a_providers_retry_after_stretches_the_backoff() -> None:
    h = Harness()
    job_id = await h.submit()
    h.llm.errors = [TransientLLMError("HTTP 429", provider="gemini", retry_after_s=30)]
    assert await h.executor.run(job_id) == 30.0
    h.make_due(job_id)
    h.llm.errors = [TransientLLMError("HTTP 429", provider="gemini", retry_after_s=0.1)]
    assert await h.executor.run(job_id) == 2.0  # the backoff, when it is the longer wait


# metrics


async def test_a_success_is_counted_under_the_provider_that_answered() -> None:
    h = Harness()
    await h.executor.run(await h.submit())
    assert h.finished_count("succeeded", "gemini") == 1
    assert h.metric("chatjobs_job_run_seconds_count", outcome="succeeded") == 1
    assert h.metric("chatjobs_llm_call_seconds_count", provider="gemini") == 1
    assert h.metric("chatjobs_job_queue_wait_seconds_count") == 1
    assert h.metric("chatjobs_job_retries_total") == 0


async def test_an_answer_from_the_fallback_is_counted_under_the_fallback() -> None:
    h = Harness()
    h.executor.llm = FallbackLLM(h.llm, FakeLLM("openrouter"), CircuitBreaker(5, 30))
    h.llm.errors = [TransientLLMError("HTTP 503", provider="gemini")]
    await h.executor.run(await h.submit())
    assert h.finished_count("succeeded", "openrouter") == 1
    assert h.finished_count("succeeded", "gemini") == 0
    assert h.metric("chatjobs_llm_call_seconds_count", provider="openrouter") == 1


async def test_a_transient_failure_counts_a_retry_and_the_retried_run() -> None:
    h = Harness()
    job_id = await h.submit()
    h.llm.errors = [TransientLLMError("HTTP 503", provider="gemini")]
    assert await h.executor.run(job_id) is not None
    assert h.metric("chatjobs_job_retries_total") == 1
    assert h.metric("chatjobs_job_run_seconds_count", outcome="retried") == 1
    assert h.finished_count("succeeded", "gemini") == 0
    h.make_due(job_id)
    await h.executor.run(job_id)
    assert h.finished_count("succeeded", "gemini") == 1
    assert h.metric("chatjobs_job_retries_total") == 1
    assert h.metric("chatjobs_job_queue_wait_seconds_count") == 1  # the first run only


async def test_a_permanent_failure_is_counted_under_the_provider_that_rejected_it() -> None:
    h = Harness()
    h.llm.errors = [PermanentLLMError("prompt blocked: SAFETY", provider="gemini")]
    await h.executor.run(await h.submit())
    assert h.finished_count("failed", "gemini") == 1
    assert h.metric("chatjobs_job_run_seconds_count", outcome="failed") == 1
    assert h.metric("chatjobs_job_retries_total") == 0


async def test_exhausted_retries_are_counted_as_failed_with_no_provider() -> None:
    h = Harness(max_attempts=2)
    job_id = await h.submit()
    h.llm.errors = [TransientLLMError("HTTP 503", provider="gemini")] * 2
    await h.executor.run(job_id)
    h.make_due(job_id)
    await h.executor.run(job_id)
    assert h.finished_count("failed", "none") == 1
    assert h.metric("chatjobs_job_retries_total") == 1


async def test_redelivery_of_a_finished_job_counts_nothing_more() -> None:
    h = Harness()
    job_id = await h.submit()
    await h.executor.run(job_id)
    await h.executor.run(job_id)
    assert h.finished_count("succeeded", "gemini") == 1
    assert h.metric("chatjobs_job_run_seconds_count", outcome="succeeded") == 1


async def test_a_run_fenced_off_by_a_later_claim_is_not_counted() -> None:
    h = Harness()
    job_id = await h.submit()

    class Overtaken(FakeLLM):
        async def complete(self, request: ChatRequest) -> Completion:
            later = utcnow() + timedelta(hours=1)  # our lease ran out; another worker took it
            assert await JobWrites(h.store).claim(
                job_id, lease_until=later + timedelta(minutes=1), now=later
            )
            return await super().complete(request)

    h.executor.llm = Overtaken("gemini")
    assert await h.executor.run(job_id) is None
    assert h.store.jobs[job_id].status is JobStatus.running  # the new holder's to finish
    assert h.finished_count("succeeded", "gemini") == 0


async def test_cache_holds_the_answer_before_the_job_reads_succeeded() -> None:
    """A client that sees `succeeded` and sends the same prompt must hit the cache."""
    h = Harness()
    job_id = await h.submit("abc")
    seen_when_cached: list[JobStatus] = []
    fill = h.cache.set

    async def recording_set(key: str, completion: Completion, ttl_s: int) -> None:
        seen_when_cached.append(h.store.jobs[job_id].status)
        await fill(key, completion, ttl_s)

    h.cache.set = recording_set  # type: ignore[method-assign,assignment]
    await h.executor.run(job_id)
    assert seen_when_cached == [JobStatus.running]
    assert h.store.jobs[job_id].status is JobStatus.succeeded
