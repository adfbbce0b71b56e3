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
        self, primary: LLMProvider, fallback: LLMProvider | None, breaker: CircuitBreaker
    ) -> None:
        self.primary, self.fallback, self.breaker = primary, fallback, breaker

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            return await self._call_primary(request)
        except TransientLLMError as primary_error:
            if self.fallback is None:
                raise
            names = self.primary.name, primary_error, self.fallback.name
            log.warning("%s failed (%s); falling back to %s", *names)
            return await self._call_fallback(request, primary_error)

    async def close(self) -> None:
        await self.primary.close()
        if self.fallback is not None:
            await self.fallback.close()

    async def _call_primary(self, request: ChatRequest) -> Completion:
        if not self.breaker.allow():
            retry_in = self.breaker.retry_in_s()
            message = f"circuit open after repeated failures; next probe in {retry_in:.0f} s"
            raise TransientLLMError(message, provider=self.primary.name)
        try:
            completion = await _typed(self.primary, request)
        except TransientLLMError:
            self.breaker.record_failure()
            raise
        except PermanentLLMError:
            self.breaker.record_success()  # it answered: the request was at fault, not the provider
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        return completion

    async def _call_fallback(self, request: ChatRequest, primary_error: LLMError) -> Completion:
        assert self.fallback is not None
        try:
            return await _typed(self.fallback, request)
        except LLMError as exc:
            # The primary's failure was transient, so a later attempt may still succeed there.
            message = f"{primary_error.provider}: {primary_error}; {exc.provider}: {exc}"
            wait = exc.retry_after_s if isinstance(exc, TransientLLMError) else None
            raise TransientLLMError(
                message, provider=self.name, status_code=exc.status_code, retry_after_s=wait
            ) from exc


async def _typed(provider: LLMProvider, request: ChatRequest) -> Completion:
    try:
        return await provider.complete(request)
    except LLMError:
        raise
    except Exception as exc:
        log.exception("%s raised an untyped error", provider.name)
        message = f"unexpected {type(exc).__name__}: {exc}"
        raise TransientLLMError(message, provider=provider.name) from exc
