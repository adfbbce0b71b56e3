"""FallbackLLM: a primary provider behind a circuit breaker, with an optional fallback."""

from __future__ import annotations

import logging

from shared.adapters.llm.circuit import CircuitBreaker
from shared.errors import LLMError, PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, Completion
from shared.ports import LLMProvider

log = logging.getLogger(__name__)


class FallbackLLM:
    """Transient primary failure (or an open circuit) → fallback; permanent failure → raise.

    Unexpected exceptions from a provider are reported as TransientLLMError, so callers only ever
    see the two typed errors.
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

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            return await self._call_primary(request)
        except TransientLLMError as primary_error:
            if self.fallback is None:
                raise
            names = self.primary.name, primary_error, self.fallback.name
            log.warning("%s failed (%s); falling back to %s", *names)
            return await self._call_fallback(request, primary_error)

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

    async def close(self) -> None:
        await self.primary.close()
        if self.fallback is not None:
            await self.fallback.close()

    async def _call_primary(self, request: ChatRequest) -> Completion:
        return await _guarded(self.primary, self.breaker, request)

    async def _call_fallback(self, request: ChatRequest, primary_error: LLMError) -> Completion:
        assert self.fallback is not None
        try:
            if self.fallback_breaker is None:
                answer = await _typed(self.fallback, request)
            else:
                answer = await _guarded(self.fallback, self.fallback_breaker, request)
        except LLMError as exc:
            # The primary's failure was transient, so a later attempt may still succeed there.
            message = f"{primary_error.provider}: {primary_error}; {exc.provider}: {exc}"
            wait = exc.retry_after_s if isinstance(exc, TransientLLMError) else None
            raise TransientLLMError(
                message, provider=self.name, status_code=exc.status_code, retry_after_s=wait
            ) from exc
        return answer.model_copy(update={"fallback": True})  # usage counts fallback answers


async def _guarded(
    provider: LLMProvider, breaker: CircuitBreaker, request: ChatRequest
) -> Completion:
    """One call through the provider's circuit breaker."""
    if not breaker.allow():
        retry_in = breaker.retry_in_s()
        message = f"circuit open after repeated failures; next probe in {retry_in:.0f} s"
        raise TransientLLMError(message, provider=provider.name)
    try:
        completion = await _typed(provider, request)
    except TransientLLMError:
        breaker.record_failure()
        raise
    except PermanentLLMError:
        breaker.record_success()  # it answered: the request was at fault, not the provider
        raise
    except BaseException:
        breaker.release()
        raise
    breaker.record_success()
    return completion


async def _typed(provider: LLMProvider, request: ChatRequest) -> Completion:
    try:
        return await provider.complete(request)
    except LLMError:
        raise
    except Exception as exc:
        log.exception("%s raised an untyped error", provider.name)
        message = f"unexpected {type(exc).__name__}: {exc}"
        raise TransientLLMError(message, provider=provider.name) from exc
