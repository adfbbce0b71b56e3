"""QuotedProvider: a provider whose every call first takes a slot of its shared quota.

Before a call (or a stream) it asks the ProviderQuota for a slot: none means QuotaExceeded
(transient, so FallbackLLM tries the fallback, and when no provider may be called the job waits,
queued, with no attempt spent: shared/execution.py). After the call it counts the tokens the
provider reported; a 429 with Retry-After pauses the provider for every worker. When the quota's
backend fails (Redis or DynamoDB unreachable or slow) the call goes ahead: the provider's own
429s still hold it back, and a quota outage never stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from shared.errors import QuotaExceeded, TransientLLMError
from shared.job_stream import Delta
from shared.models import ChatRequest, Completion
from shared.ports import LLMProvider, ProviderQuota

log = logging.getLogger(__name__)
T = TypeVar("T")

QUOTA_TIMEOUT_S = 1.0
WARN_EVERY_S = 30.0  # one warning per this while the quota's backend keeps failing


class QuotedProvider:
    def __init__(self, provider: LLMProvider, quota: ProviderQuota) -> None:
        self.provider, self.quota = provider, quota
        self.name = provider.name
        self._warned_at = -WARN_EVERY_S

    async def start(self) -> None:
        await self.provider.start()

    async def close(self) -> None:
        await self.provider.close()

    async def complete(self, request: ChatRequest) -> Completion:
        await self._take_slot()
        try:
            completion = await self.provider.complete(request)
        except TransientLLMError as exc:
            await self._pause_after(exc)
            raise
        await self._spend(completion)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        await self._take_slot()
        try:
            async with aclosing(self.provider.stream(request)) as deltas:
                async for delta in deltas:
                    if delta.completion is not None:
                        await self._spend(delta.completion)
                    yield delta
        except TransientLLMError as exc:
            await self._pause_after(exc)
            raise

    async def wait_s(self) -> float:
        """Seconds until a call may take a slot (0: now), nothing taken."""
        return await self._ask(lambda: self.quota.wait_s(self.name), 0.0)

    async def _take_slot(self) -> None:
        wait = await self._ask(lambda: self.quota.acquire(self.name), 0.0)
        if wait > 0:
            message = f"no room in its shared quota (or paused after a 429) for {wait:.1f} s"
            raise QuotaExceeded(message, provider=self.name, retry_after_s=wait)

    async def _spend(self, completion: Completion) -> None:
        tokens = completion.usage.input_tokens + completion.usage.output_tokens
        await self._ask(lambda: self.quota.spend_tokens(self.name, tokens), None)

    async def _pause_after(self, exc: TransientLLMError) -> None:
        if exc.status_code == 429 and exc.retry_after_s:
            seconds = exc.retry_after_s
            log.warning("%s answered 429: every worker pauses for %.1f s", self.name, seconds)
            await self._ask(lambda: self.quota.pause(self.name, seconds), None)

    async def _ask(self, call: Callable[[], Awaitable[T]], otherwise: T) -> T:
        try:
            async with asyncio.timeout(QUOTA_TIMEOUT_S):
                return await call()
        except Exception as exc:
            if time.monotonic() - self._warned_at >= WARN_EVERY_S:
                self._warned_at = time.monotonic()
                log.warning("the %s quota could not be read (%r): calls go ahead", self.name, exc)
            return otherwise
