"""How HTTP outcomes map onto the typed LLM errors, shared by the HTTP-based providers."""

from __future__ import annotations

from shared.errors import LLMError, PermanentLLMError, TransientLLMError

DETAIL_CHARS = 300


def is_transient_status(status: int) -> bool:
    """429 and 408 ask us to come back later; 5xx are the provider's own trouble."""
    return status in (408, 429) or status >= 500


def error_for_status(provider: str, status: int, detail: str) -> LLMError:
    kind = TransientLLMError if is_transient_status(status) else PermanentLLMError
    message = f"HTTP {status}: {shorten(detail)}" if detail else f"HTTP {status}"
    return kind(message, provider=provider, status_code=status)


def shorten(text: str, limit: int = DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
