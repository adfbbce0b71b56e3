"""Provider quotas where the LLM is called: QuotedProvider (a slot before each call, tokens after,
a 429's pause for everyone), FallbackLLM (overflow to the fallback; a wait when neither may be
called) and JobExecutor (the job waits, queued, with no attempt spent) — on the memory quota and
a hand-driven clock."""

from __future__ import annotations

import random
from contextlib import aclosing
from datetime import timedelta

import pytest

from shared import transitions
from shared.adapters.llm.build import build_llm
from shared.adapters.llm.circuit import CircuitBreaker, CircuitState
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.quoted import QuotedProvider
from shared.adapters.quota.memory import MemoryProviderQuota
from shared.errors import QuotaExceeded, TransientLLMError
from shared.execution import JobExecutor
from shared.job_stream import Delta
from shared.metrics import JobMetrics
from shared.models import ChatRequest, Job, JobCreate, JobError, JobStatus, Message, utcnow
from shared.ports import LLMProvider, ProviderQuota
from shared.quotas import QUOTA_WINDOW_S, QuotaLimits, quota_limits
from shared.retry import RetryPolicy
from shared.service import ChatService
from tests.conftest import make_settings
from tests.fakes import FakeJobQueue, FakeJobStore, FakeLLM, FakeResultCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(text: str = "one two three") -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)])


def rate_limited(seconds: float) -> TransientLLMError:
    return TransientLLMError("HTTP 429", provider="gemini", status_code=429, retry_after_s=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def quota(clock: Clock, **limits: QuotaLimits) -> MemoryProviderQuota:
    return MemoryProviderQuota(limits, clock=clock)


def test_quoted_provider_and_quotas_satisfy_their_ports(clock: Clock) -> None:
    memory: ProviderQuota = quota(clock)
    provider: LLMProvider = QuotedProvider(FakeLLM("gemini"), memory)
    assert provider.name == "gemini"


async def test_a_call_takes_a_slot_and_a_full_quota_calls_nothing(clock: Clock) -> None:
    gemini = FakeLLM("gemini")
    quoted = QuotedProvider(gemini, quota(clock, gemini=QuotaLimits(rpm=2)))
    await quoted.complete(ask())
    await quoted.complete(ask())
    with pytest.raises(QuotaExceeded) as refused:
        await quoted.complete(ask())
    assert 0 < refused.value.retry_after_s <= QUOTA_WINDOW_S
    assert refused.value.providers == ("gemini",)
    assert len(gemini.requests) == 2  # the refused call never reached the provider
    clock.now += refused.value.retry_after_s
    assert (await quoted.complete(ask())).provider == "gemini"


async def test_tokens_are_counted_after_the_call_and_hold_the_next(clock: Clock) -> None:
    quoted = QuotedProvider(FakeLLM("gemini"), quota(clock, gemini=QuotaLimits(tpm=10)))
    answer = await quoted.complete(ask("a b c d e f"))  # the fake reports 6 + 6 tokens
    assert answer.usage.input_tokens + answer.usage.output_tokens == 12
    with pytest.raises(QuotaExceeded):
        await quoted.complete(ask())


async def test_a_stream_takes_a_slot_and_counts_its_tokens(clock: Clock) -> None:
    gemini = FakeLLM("gemini")
    quoted = QuotedProvider(gemini, quota(clock, gemini=QuotaLimits(rpm=5, tpm=10)))
    deltas: list[Delta] = []
    async with aclosing(quoted.stream(ask("a b c d e f"))) as stream:
        async for delta in stream:
            deltas.append(delta)
    assert deltas[-1].completion is not None
    with pytest.raises(QuotaExceeded):  # its 12 tokens are spent
        await anext(quoted.stream(ask()))
    assert len(gemini.requests) == 1


async def test_a_429_with_retry_after_pauses_the_provider_for_every_worker(clock: Clock) -> None:
    shared = quota(clock)  # no limits set: pauses hold anyway
    seen_it, other = FakeLLM("gemini"), FakeLLM("gemini")
    seen_it.errors.append(rate_limited(5))
    with pytest.raises(TransientLLMError) as first:
        await QuotedProvider(seen_it, shared).complete(ask())
    assert not isinstance(first.value, QuotaExceeded)  # that call was made, and failed
    with pytest.raises(QuotaExceeded) as held:
        await QuotedProvider(other, shared).complete(ask())
    assert held.value.retry_after_s == pytest.approx(5)
    assert other.requests == []
    clock.now += 5
    assert (await QuotedProvider(other, shared).complete(ask())).provider == "gemini"


async def test_a_failing_quota_backend_lets_calls_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(MemoryProviderQuota):
        async def acquire(self, provider: str) -> float:
            raise ConnectionError("quota backend down")

    quoted = QuotedProvider(FakeLLM("gemini"), Broken({"gemini": QuotaLimits(rpm=1)}))
    assert (await quoted.complete(ask())).provider == "gemini"
    assert (await quoted.complete(ask())).provider == "gemini"
    assert "calls go ahead" in caplog.text


def fallback_llm(
    clock: Clock, shared: ProviderQuota, threshold: int = 2
) -> tuple[FallbackLLM, FakeLLM, FakeLLM]:
    gemini, openrouter = FakeLLM("gemini"), FakeLLM("openrouter")
    llm = FallbackLLM(
        QuotedProvider(gemini, shared),
        QuotedProvider(openrouter, shared),
        CircuitBreaker(threshold, cooldown_s=30, clock=clock),
        CircuitBreaker(threshold, cooldown_s=30, clock=clock),
    )
    return llm, gemini, openrouter


async def test_the_primarys_overflow_goes_to_the_fallback_without_opening_its_circuit(
    clock: Clock,
) -> None:
    shared = quota(clock, gemini=QuotaLimits(rpm=1))
    llm, gemini, openrouter = fallback_llm(clock, shared)
    answers = [await llm.complete(ask()) for _ in range(5)]
    assert [a.provider for a in answers] == ["gemini"] + ["openrouter"] * 4
    assert [a.fallback for a in answers] == [False] + [True] * 4
    assert llm.breaker.state is CircuitState.closed  # a full quota is no failure
    assert len(gemini.requests) == 1 and len(openrouter.requests) == 4


async def test_when_neither_may_be_called_the_wait_is_the_sooner_slot(clock: Clock) -> None:
    shared = quota(clock, gemini=QuotaLimits(rpm=1), openrouter=QuotaLimits(rpm=1))
    llm, _, openrouter = fallback_llm(clock, shared)
    await llm.complete(ask())  # gemini's slot
    clock.now += 10
    await llm.complete(ask())  # gemini full: openrouter's slot
    assert await llm.quota_wait_s() == pytest.approx(QUOTA_WINDOW_S - 10)
    with pytest.raises(QuotaExceeded) as refused:
        await llm.complete(ask())
    assert refused.value.retry_after_s == pytest.approx(QUOTA_WINDOW_S - 10)  # gemini's
    assert refused.value.providers == ("gemini", "openrouter")
    assert len(openrouter.requests) == 1
    clock.now += QUOTA_WINDOW_S - 10
    assert await llm.quota_wait_s() == 0.0
    assert (await llm.complete(ask())).provider == "gemini"


async def test_an_open_circuit_and_a_full_fallback_quota_are_a_wait(clock: Clock) -> None:
    shared = quota(clock, openrouter=QuotaLimits(rpm=1))
    llm, gemini, _ = fallback_llm(clock, shared, threshold=1)
    gemini.errors.append(TransientLLMError("HTTP 503", provider="gemini", status_code=503))
    assert (await llm.complete(ask())).provider == "openrouter"  # gemini's circuit opens
    with pytest.raises(QuotaExceeded) as refused:
        await llm.complete(ask())
    assert refused.value.retry_after_s == pytest.approx(30)  # the circuit's probe, sooner
    assert refused.value.providers == ("openrouter",)


async def test_a_stream_falls_back_when_the_primarys_quota_is_full(clock: Clock) -> None:
    shared = quota(clock, gemini=QuotaLimits(rpm=1))
    llm, _, _ = fallback_llm(clock, shared)
    await llm.complete(ask())
    deltas = [d async for d in llm.stream(ask())]
    done = deltas[-1].completion
    assert done is not None and done.provider == "openrouter" and done.fallback


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


class Harness:
    def __init__(self, clock: Clock, llm: LLMProvider, budget_s: float = 900) -> None:
        self.store, self.queue = FakeJobStore(), FakeJobQueue()
        self.metrics = JobMetrics()
        self.chat = ChatService(self.store, FakeResultCache(), self.queue)
        policy = RetryPolicy(budget_s=budget_s, base_s=1, max_delay_s=8, max_attempts=3,
                             rng=NoJitter())  # fmt: skip
        self.executor = JobExecutor(self.store, None, llm, job_timeout_s=5, retry=policy,
                                    cache_ttl_s=60, metrics=self.metrics)  # fmt: skip

    async def submit(self, prompt: str) -> str:
        body = JobCreate.model_validate({"messages": [{"role": "user", "content": prompt}]})
        return (await self.chat.submit("t1", body)).id

    def waits(self, provider: str) -> float:
        sample = "chatjobs_provider_quota_waits_total"
        return self.metrics.registry.get_sample_value(sample, {"provider": provider}) or 0.0


async def test_a_job_that_no_provider_may_take_waits_queued_with_no_attempt_spent(
    clock: Clock,
) -> None:
    shared = quota(clock, gemini=QuotaLimits(rpm=1))
    gemini = FakeLLM("gemini")
    llm = FallbackLLM(QuotedProvider(gemini, shared), None, CircuitBreaker(2, 30, clock=clock))
    h = Harness(clock, llm)
    first, second = await h.submit("first"), await h.submit("second")
    assert await h.executor.run(first) is None
    delay = await h.executor.run(second)
    assert delay == pytest.approx(QUOTA_WINDOW_S)
    job = h.store.jobs[second]
    assert job.status is JobStatus.queued and job.attempts == 0
    assert job.error is not None and job.error.code == "retrying"
    assert "no attempt spent" in job.error.message
    assert job.not_before is not None and job.not_before > utcnow()
    assert job.quota_waited_s == pytest.approx(QUOTA_WINDOW_S, abs=1)
    assert h.waits("gemini") == 1
    # an early delivery is told to come back when the job is due; once the slot frees, it runs
    assert await h.executor.run(second) == pytest.approx(QUOTA_WINDOW_S, abs=1)
    clock.now += QUOTA_WINDOW_S
    h.store.jobs[second] = job.model_copy(update={"not_before": None})
    assert await h.executor.run(second) is None
    done = h.store.jobs[second]
    assert done.status is JobStatus.succeeded and done.attempts == 1 and done.error is None
    assert len(gemini.requests) == 2


async def test_quota_waits_do_not_use_up_the_retry_budget() -> None:
    policy = RetryPolicy(budget_s=60, base_s=1, max_delay_s=8, max_attempts=5)
    old = Job(tenant="t", request=ask(), attempts=1,
              created_at=utcnow() - timedelta(seconds=300))  # fmt: skip
    assert not policy.allows(old, 1.0)
    assert policy.allows(old.model_copy(update={"quota_waited_s": 280.0}), 1.0)


def test_settings_give_each_provider_its_limits() -> None:
    settings = make_settings(gemini_rpm=120, gemini_tpm=0, openrouter_tpm=5000)
    assert quota_limits(settings) == {
        "gemini": QuotaLimits(rpm=120, tpm=0),
        "openrouter": QuotaLimits(rpm=0, tpm=5000),
    }


def test_build_llm_with_a_quota_puts_every_provider_behind_it(clock: Clock) -> None:
    llm = build_llm(make_settings(gemini_api_key="g", openrouter_api_key="o"), quota(clock))
    assert isinstance(llm, FallbackLLM)
    assert isinstance(llm.primary, QuotedProvider) and llm.primary.name == "gemini"
    assert isinstance(llm.fallback, QuotedProvider) and llm.fallback.name == "openrouter"


def test_defer_gives_the_claim_back_and_only_for_that_claim() -> None:
    now = utcnow()
    running = Job(tenant="t", request=ask(), status=JobStatus.running, attempts=2,
                  lease_until=now + timedelta(seconds=30), quota_waited_s=5.0)  # fmt: skip
    note = JobError(code="retrying", message="waiting")
    until = now + timedelta(seconds=20)
    change = transitions.defer(running, attempt=2, note=note, not_before=until, now=now)
    assert change is not None
    after = change.after
    assert (after.status, after.attempts, after.not_before, after.lease_until) == (
        JobStatus.queued, 1, until, None)  # fmt: skip
    assert after.quota_waited_s == pytest.approx(25.0) and after.error == note
    assert transitions.defer(running, attempt=1, note=note, not_before=until, now=now) is None
    queued = running.model_copy(update={"status": JobStatus.queued})
    assert transitions.defer(queued, attempt=2, note=note, not_before=until, now=now) is None
