"""FallbackLLM: a primary provider behind a circuit breaker, with an optional fallback."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager

from shared.adapters.llm.circuit import CircuitBreaker
from shared.adapters.llm.quoted import QuotedProvider
from shared.errors import LLMError, PermanentLLMError, QuotaExceeded, TransientLLMError
from shared.heartbeats import ProviderHealth
from shared.job_stream import Delta
from shared.models import ChatRequest, Completion
from shared.ports import LLMProvider

log = logging.getLogger(__name__)


class FallbackLLM:
    """Transient primary failure (or an open circuit) → fallback; permanent failure → raise.

    Unexpected exceptions from a provider are reported as TransientLLMError, so callers only ever
    see the two typed errors. A stream falls back too, even after the primary has sent text:
    each delta names its provider, and a follower of the job sees the text start again from
    another provider (shared/job_stream.py says what it does with that).
    """

    name = "fallback"

    def __init__(
        self,
        primary: LLMProvider,
        fallback: LLMProvider | None,
        breaker: CircuitBreaker,
        fallback_breaker: CircuitBreaker | None = None,
    ) -> None:
        self.primary, self.fallback, self.breaker = primary, fallback, breaker
        self.fallback_breaker = fallback_breaker
        self.fallbacks = 0  # calls the fallback took over (the console's fallback rate)

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            with _guarded(self.primary, self.breaker):
                return await self.primary.complete(request)
        except TransientLLMError as primary_error:
            fallback = self._fallback_after(primary_error)
            with _after(primary_error), _guarded(fallback, self.fallback_breaker):
                answer = await fallback.complete(request)
            return _marked(answer)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        try:
            async with aclosing(_streamed(self.primary, self.breaker, request)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        except TransientLLMError as primary_error:
            fallback, error = self._fallback_after(primary_error), primary_error
        with _after(error):
            async with aclosing(_streamed(fallback, self.fallback_breaker, request)) as deltas:
                async for delta in deltas:
                    done = delta.completion
                    yield delta if done is None else Delta("", delta.provider, _marked(done))

    def _fallback_after(self, primary_error: TransientLLMError) -> LLMProvider:
        if self.fallback is None:
            raise primary_error
        names = self.primary.name, primary_error, self.fallback.name
        if isinstance(primary_error, QuotaExceeded):  # routine overflow: not a fallback alarm
            log.info("%s is full (%s); its overflow goes to %s", *names)
        else:
            log.warning("%s failed (%s); falling back to %s", *names)
        self.fallbacks += 1
        return self.fallback

    def health(self) -> list[ProviderHealth]:
        """Each provider's circuit, recent errors and calls, as this process sees them."""
        found = [breaker_health(self.primary.name, self.breaker, self.fallbacks)]
        if self.fallback is not None:
            found.append(breaker_health(self.fallback.name, self.fallback_breaker, 0))
        return found

    async def start(self) -> None:
        await self.primary.start()
        if self.fallback is not None:
            await self.fallback.start()

    def unavailable_for_s(self) -> float:
        """0 when a call may go through now; else how long until a circuit lets a probe through.
        Only when every provider's circuit is open is there nothing to try."""
        waits = [self.breaker.wait_s()]
        if self.fallback is not None:
            waits.append(self.fallback_breaker.wait_s() if self.fallback_breaker else 0.0)
        return min(waits)

    async def quota_wait_s(self) -> float:
        """0 when some provider may be called now (its circuit and its shared quota let a call
        through); else the seconds until one may, nothing taken."""
        waits = []
        for provider, breaker in self._providers():
            circuit = breaker.wait_s() if breaker is not None else 0.0
            quota = await provider.wait_s() if isinstance(provider, QuotedProvider) else 0.0
            if max(circuit, quota) == 0:
                return 0.0
            waits.append(max(circuit, quota))
        return min(waits)

    def _providers(self) -> list[tuple[LLMProvider, CircuitBreaker | None]]:
        pairs: list[tuple[LLMProvider, CircuitBreaker | None]] = [(self.primary, self.breaker)]
        if self.fallback is not None:
            pairs.append((self.fallback, self.fallback_breaker))
        return pairs

    async def close(self) -> None:
        await self.primary.close()
        if self.fallback is not None:
            await self.fallback.close()


def breaker_health(name: str, breaker: CircuitBreaker | None, fallbacks: int) -> ProviderHealth:
    if breaker is None:
        return ProviderHealth(name=name, circuit="none", fallbacks=fallbacks)
    return ProviderHealth(
        name=name,
        circuit=breaker.state.value,
        consecutive_failures=breaker.failures,
        recent_errors=breaker.recent_failures(),
        last_error=breaker.last_error,
        last_error_at=breaker.last_error_at,
        calls=breaker.calls,
        fallbacks=fallbacks,
    )


def provider_health(llm: LLMProvider) -> list[ProviderHealth]:
    """Health of the process's providers: a FallbackLLM's own, or one line for a lone provider."""
    if isinstance(llm, FallbackLLM):
        return llm.health()
    return [ProviderHealth(name=llm.name, circuit="none")]


def _marked(completion: Completion) -> Completion:
    """An answer from the fallback (usage counts those)."""
    return completion.model_copy(update={"fallback": True})


async def _streamed(
    provider: LLMProvider, breaker: CircuitBreaker | None, request: ChatRequest
) -> AsyncGenerator[Delta, None]:
    with _guarded(provider, breaker):
        async with aclosing(provider.stream(request)) as deltas:
            async for delta in deltas:
                yield delta


@contextmanager
def _after(primary_error: LLMError) -> Iterator[None]:
    """The fallback's failure, reported with the primary's. The primary's failure was transient,
    so a later attempt may still succeed there: the whole is transient."""
    try:
        yield
    except LLMError as exc:
        if (waiting := _neither_called(primary_error, exc)) is not None:
            raise waiting from exc
        message = f"{primary_error.provider}: {primary_error}; {exc.provider}: {exc}"
        wait = exc.retry_after_s if isinstance(exc, TransientLLMError) else None
        raise TransientLLMError(
            message, provider=FallbackLLM.name, status_code=exc.status_code, retry_after_s=wait
        ) from exc


class CircuitOpen(TransientLLMError):
    """The provider was not called: its circuit is open for `retry_in_s`."""

    def __init__(self, message: str, *, provider: str, retry_in_s: float) -> None:
        super().__init__(message, provider=provider)
        self.retry_in_s = retry_in_s


def _neither_called(primary: LLMError, fallback: LLMError) -> QuotaExceeded | None:
    """When a quota kept one provider from being called and a quota or an open circuit kept
    the other: the job waits for the sooner of the two (no attempt spent)."""
    refused = [e for e in (primary, fallback) if isinstance(e, QuotaExceeded | CircuitOpen)]
    quotas = [e for e in refused if isinstance(e, QuotaExceeded)]
    if len(refused) < 2 or not quotas:
        return None
    wait = min(e.retry_after_s if isinstance(e, QuotaExceeded) else e.retry_in_s for e in refused)
    providers = tuple(p for e in quotas for p in e.providers)
    message = f"no provider may be called for {wait:.1f} s: " + "; ".join(
        f"{e.provider}: {e}" for e in refused
    )
    return QuotaExceeded(
        message, provider=FallbackLLM.name, retry_after_s=wait, providers=providers
    )


@contextmanager
def _guarded(provider: LLMProvider, breaker: CircuitBreaker | None) -> Iterator[None]:
    """One call through the provider's circuit breaker (if it has one), its errors typed."""
    if breaker is not None and not breaker.allow():
        retry_in = breaker.retry_in_s()
        message = f"circuit open after repeated failures; next probe in {retry_in:.0f} s"
        raise CircuitOpen(message, provider=provider.name, retry_in_s=retry_in)
    try:
        with _typed(provider):
            yield
    except QuotaExceeded:
        if breaker is not None:  # not called: no verdict on the provider
            breaker.release()
        raise
    except TransientLLMError as exc:
        if breaker is not None:
            breaker.record_failure(str(exc))
        raise
    except PermanentLLMError:
        if breaker is not None:  # it answered: the request was at fault, not the provider
            breaker.record_success()
        raise
    except BaseException:
        if breaker is not None:
            breaker.release()
        raise
    if breaker is not None:
        breaker.record_success()


@contextmanager
def _typed(provider: LLMProvider) -> Iterator[None]:
    try:
        yield
    except LLMError:
        raise
    except Exception as exc:
        log.exception("%s raised an untyped error", provider.name)
        message = f"unexpected {type(exc).__name__}: {exc}"
        raise TransientLLMError(message, provider=provider.name) from exc
