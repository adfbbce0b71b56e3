"""A provider that needs no network: used only when no LLM key is configured."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from shared.job_stream import Delta, streamed
from shared.models import ChatRequest, Completion, Usage

ECHO_CHARS = 500


class OfflineProvider:
    """Answers deterministically from the prompt so the service works end to end without keys."""

    name = "offline"

    async def start(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> Completion:
        prompt = next(m.content for m in reversed(request.messages) if m.role == "user")
        echo = prompt if len(prompt) <= ECHO_CHARS else prompt[:ECHO_CHARS] + "…"
        content = f"[offline] no LLM key is configured; you said: {echo}"
        words_in = sum(len(m.content.split()) for m in request.messages)
        usage = Usage(input_tokens=words_in, output_tokens=len(content.split()))
        return Completion(content=content, provider="offline", model="offline", usage=usage)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """The same answer, a word at a time (as the stub and the real providers stream)."""
        answer = await self.complete(request)
        async for delta in streamed(answer, re.split(r"(?<= )", answer.content)):
            yield delta

    async def close(self) -> None:
        return None
