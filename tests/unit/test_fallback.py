"""FallbackLLM, CircuitBreaker and build_llm, with fake providers and a hand-driven clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.adapters.llm.build import build_llm
from shared.adapters.llm.circuit import CircuitBreaker, CircuitState
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.offline import OfflineProvider
from shared.errors import PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, Completion, Message
from shared.ports import LLMProvider
from tests.conftest import make_settings
from tests.fakes import FakeLLM


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ask(text: str = "hello there") -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)])


def down(provider: str = "primary", status: int = 503) -> TransientLLMError:
    return TransientLLMError(f"HTTP {status}: unavailable", provider=provider, status_code=status)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def primary() -> FakeLLM:
    return FakeLLM("primary")


@pytest.fixture
def backup() -> FakeLLM:
    return FakeLLM("backup")


@pytest.fixture
def llm(primary: FakeLLM, backup: FakeLLM, clock: FakeClock) -> FallbackLLM:
    return FallbackLLM(primary, backup, CircuitBreaker(2, cooldown_s=30, clock=clock))


def test_fallback_llm_satisfies_the_port(llm: FallbackLLM) -> None:
    provider: LLMProvider = llm
    assert provider.name == "fallback"


async def test_primary_answers_when_healthy(llm: FallbackLLM, backup: FakeLLM) -> None:
    completion = await llm.complete(ask("abc"))
    assert (completion.provider, completion.content) == ("primary", "cba")
    assert backup.requests == []


async def test_transient_primary_failure_uses_the_fallback(
    llm: FallbackLLM, primary: FakeLLM, backup: FakeLLM
) -> None:
    primary.errors.append(down())
    completion = await llm.complete(ask("abc"))
    assert completion.provider == "backup"
    assert len(primary.requests) == len(backup.requests) == 1


async def test_only_an_answer_from_the_fallback_is_marked_as_one(
    llm: FallbackLLM, primary: FakeLLM
) -> None:
    assert (await llm.complete(ask())).fallback is False
    primary.errors.append(down())
    marked = await llm.complete(ask())
    assert marked.provider == "backup" and marked.fallback is True
    assert "fallback" not in marked.public().model_dump()  # usage counts it; clients see provider


async def test_untyped_primary_failure_counts_as_transient(
    llm: FallbackLLM, primary: FakeLLM
) -> None:
    primary.errors.append(KeyError("candidates"))
    completion = await llm.complete(ask())
    assert completion.provider == "backup"


async def test_permanent_primary_failure_does_not_fall_back(
    llm: FallbackLLM, primary: FakeLLM, backup: FakeLLM
) -> None:
    primary.errors.append(PermanentLLMError("HTTP 400: bad request", provider="primary"))
    with pytest.raises(PermanentLLMError, match="HTTP 400"):
        await llm.complete(ask())
    assert backup.requests == []


async def test_both_failing_names_both_errors(
    llm: FallbackLLM, primary: FakeLLM, backup: FakeLLM
) -> None:
    primary.errors.append(down("primary", 500))
    backup.errors.append(down("backup", 503))
    with pytest.raises(TransientLLMError) as caught:
        await llm.complete(ask())
    assert str(caught.value) == "primary: HTTP 500: unavailable; backup: HTTP 503: unavailable"
    assert caught.value.status_code == 503


async def test_without_fallback_the_primary_error_is_raised(
    primary: FakeLLM, clock: FakeClock
) -> None:
    llm = FallbackLLM(primary, None, CircuitBreaker(2, 30, clock=clock))
    primary.errors.append(down())
    with pytest.raises(TransientLLMError, match="HTTP 503"):
        await llm.complete(ask())


async def test_breaker_opens_after_threshold_and_skips_primary(
    llm: FallbackLLM, primary: FakeLLM, backup: FakeLLM
) -> None:
    primary.errors.extend([down(), down()])
    await llm.complete(ask())
    await llm.complete(ask())
    assert llm.breaker.state == CircuitState.open

    completion = await llm.complete(ask())

    assert completion.provider == "backup"
    assert len(primary.requests) == 2
    assert len(backup.requests) == 3


async def test_breaker_probes_after_cooldown_and_closes_on_success(
    llm: FallbackLLM, primary: FakeLLM, clock: FakeClock
) -> None:
    primary.errors.extend([down(), down()])
    await llm.complete(ask())
    await llm.complete(ask())
    clock.advance(29)
    assert (await llm.complete(ask())).provider == "backup"

    clock.advance(1)
    completion = await llm.complete(ask())

    assert completion.provider == "primary"
    assert llm.breaker.state == CircuitState.closed
    assert llm.breaker.failures == 0


async def test_failed_probe_opens_the_breaker_again(
    llm: FallbackLLM, primary: FakeLLM, clock: FakeClock
) -> None:
    primary.errors.extend([down(), down(), down()])
    await llm.complete(ask())
    await llm.complete(ask())
    clock.advance(30)

    assert (await llm.complete(ask())).provider == "backup"  # the probe failed
    assert llm.breaker.state == CircuitState.open
    await llm.complete(ask())
    assert len(primary.requests) == 3  # skipped again until the next cooldown


async def test_permanent_errors_do_not_open_the_breaker(llm: FallbackLLM, primary: FakeLLM) -> None:
    primary.errors.extend([down(), PermanentLLMError("blocked", provider="primary"), down()])
    await llm.complete(ask())
    with pytest.raises(PermanentLLMError):
        await llm.complete(ask())
    await llm.complete(ask())
    assert llm.breaker.state == CircuitState.closed


async def test_open_breaker_without_fallback_fails_fast(primary: FakeLLM, clock: FakeClock) -> None:
    llm = FallbackLLM(primary, None, CircuitBreaker(1, 30, clock=clock))
    primary.errors.append(down())
    with pytest.raises(TransientLLMError):
        await llm.complete(ask())
    with pytest.raises(TransientLLMError, match="circuit open"):
        await llm.complete(ask())
    assert len(primary.requests) == 1


def test_half_open_breaker_lets_one_probe_through(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.advance(10)
    assert breaker.allow()
    assert breaker.state == CircuitState.half_open
    assert not breaker.allow()  # the probe is still in flight


class StallingLLM(FakeLLM):
    async def complete(self, request: ChatRequest) -> Completion:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")


async def test_cancelled_probe_frees_the_half_open_slot(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.advance(10)
    llm = FallbackLLM(StallingLLM("primary"), FakeLLM("backup"), breaker)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(llm.complete(ask()), 0.01)
    assert breaker.allow()


def test_build_llm_without_keys_is_offline_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        llm = build_llm(make_settings())
    assert isinstance(llm, OfflineProvider)
    assert "NO LLM KEY SET" in caplog.text and "offline provider" in caplog.text


def test_build_llm_with_both_keys_falls_back_from_gemini_to_openrouter() -> None:
    llm = build_llm(make_settings(gemini_api_key="g", openrouter_api_key="o"))
    assert isinstance(llm, FallbackLLM)
    assert llm.primary.name == "gemini"
    assert llm.fallback is not None and llm.fallback.name == "openrouter"


def test_build_llm_with_one_key_wraps_that_provider() -> None:
    llm = build_llm(make_settings(openrouter_api_key="o", circuit_failure_threshold=7))
    assert isinstance(llm, FallbackLLM)
    assert (llm.primary.name, llm.fallback, llm.breaker.failure_threshold) == (
        "openrouter",
        None,
        7,
    )


async def test_offline_provider_is_deterministic() -> None:
    offline = OfflineProvider()
    first, second = await offline.complete(ask("ping")), await offline.complete(ask("ping"))
    assert first == second
    assert (first.provider, first.model) == ("offline", "offline")
    assert first.content.startswith("[offline] ") and "ping" in first.content


@pytest.mark.parametrize(
    "header,expected",
    [("7", 7.0), ("0", 0.0), ("-3", 0.0), ("99999", 3600.0), ("soon", None), (None, None)],
)
def test_retry_after_header_in_seconds(header: str | None, expected: float | None) -> None:
    from shared.adapters.llm.http_errors import retry_after_seconds

    assert retry_after_seconds(header) == expected


def test_retry_after_as_an_http_date() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from shared.adapters.llm.http_errors import retry_after_seconds

    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = retry_after_seconds(later)
    assert seconds is not None and 100 < seconds <= 120
