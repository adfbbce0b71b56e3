"""FallbackLLM.stream and the offline provider's stream, with fake providers: the same breaker
and fallback rules as complete(), and every delta naming the provider that wrote it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest

from shared.adapters.llm.circuit import CircuitBreaker, CircuitState
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.offline import OfflineProvider
from shared.errors import PermanentLLMError, TransientLLMError
from shared.job_stream import Delta
from shared.models import ChatRequest, Message
from shared.ports import LLMProvider
from tests.fakes import FakeLLM


def ask(text: str = "hello there") -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)])


class BreaksMidway(FakeLLM):
    """Streams the first two characters of its answer, then fails with `error`."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name)
        self.error = error

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        answer = await self.complete(request)
        yield Delta(answer.content[:2], self.name)
        raise self.error


def down(provider: str) -> TransientLLMError:
    return TransientLLMError("HTTP 503: unavailable", provider=provider, status_code=503)


async def deltas_of(llm: LLMProvider, request: ChatRequest) -> list[Delta]:
    async with aclosing(llm.stream(request)) as deltas:
        return [delta async for delta in deltas]


def breaker() -> CircuitBreaker:
    return CircuitBreaker(1, cooldown_s=30)


async def test_a_healthy_primary_streams_its_answer() -> None:
    llm = FallbackLLM(FakeLLM("primary"), FakeLLM("backup"), breaker())
    *texts, last = await deltas_of(llm, ask("abc"))
    assert [(d.text, d.provider) for d in texts] == [("cba", "primary")]
    assert last.completion is not None and last.completion.provider == "primary"
    assert last.completion.fallback is False


async def test_a_primary_failing_midway_falls_back_and_each_delta_names_its_writer() -> None:
    primary = BreaksMidway("primary", down("primary"))
    llm = FallbackLLM(primary, FakeLLM("backup"), breaker())
    *texts, last = await deltas_of(llm, ask("abcdef"))
    assert [(d.text, d.provider) for d in texts] == [("fe", "primary"), ("fedcba", "backup")]
    assert last.completion is not None
    assert (last.completion.provider, last.completion.fallback) == ("backup", True)
    assert last.completion.content == "fedcba"  # the fallback's text only
    assert llm.breaker.state is CircuitState.open  # the primary's failure counted


async def test_without_a_fallback_a_failure_midway_is_raised() -> None:
    llm = FallbackLLM(BreaksMidway("primary", down("primary")), None, breaker())
    with pytest.raises(TransientLLMError, match="HTTP 503"):
        await deltas_of(llm, ask())


async def test_a_permanent_failure_midway_does_not_fall_back() -> None:
    backup = FakeLLM("backup")
    refused = PermanentLLMError("withheld", provider="primary")
    llm = FallbackLLM(BreaksMidway("primary", refused), backup, breaker())
    with pytest.raises(PermanentLLMError, match="withheld"):
        await deltas_of(llm, ask())
    assert backup.requests == []
    assert llm.breaker.state is CircuitState.closed


async def test_both_failing_midway_names_both_errors() -> None:
    primary, backup = BreaksMidway("primary", down("primary")), BreaksMidway("backup", down("b"))
    llm = FallbackLLM(primary, backup, breaker(), breaker())
    with pytest.raises(TransientLLMError) as caught:
        await deltas_of(llm, ask())
    assert str(caught.value) == "primary: HTTP 503: unavailable; b: HTTP 503: unavailable"
    assert caught.value.provider == "fallback"


async def test_an_untyped_error_midway_is_transient() -> None:
    llm = FallbackLLM(BreaksMidway("primary", KeyError("parts")), FakeLLM("backup"), breaker())
    *_, last = await deltas_of(llm, ask())
    assert last.completion is not None and last.completion.provider == "backup"


async def test_a_stream_left_early_frees_the_half_open_probe() -> None:
    probe = CircuitBreaker(1, cooldown_s=0)
    probe.record_failure()
    llm = FallbackLLM(FakeLLM("primary"), None, probe)
    async with aclosing(llm.stream(ask())) as deltas:
        await anext(deltas)  # the probe is in flight; the reader goes away
    assert probe.allow()


async def test_the_offline_provider_streams_a_word_at_a_time() -> None:
    *texts, last = await deltas_of(OfflineProvider(), ask("say it slowly"))
    assert len(texts) > 5 and all(d.provider == "offline" for d in texts)
    assert last.completion is not None
    assert "".join(d.text for d in texts) == last.completion.content
