"""How HTTP outcomes map onto the typed LLM errors, shared by the HTTP-based providers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from shared.errors import LLMError, PermanentLLMError, TransientLLMError

DETAIL_CHARS = 300
MAX_RETRY_AFTER_S = 3600.0


def is_transient_status(status: int) -> bool:
    """429 and 408 ask us to come back later; 5xx are the provider's own trouble."""
    return status in (408, 429) or status >= 500


def error_for_status(
    provider: str, status: int, detail: str, retry_after: str | None = None
) -> LLMError:
    message = f"HTTP {status}: {shorten(detail)}" if detail else f"HTTP {status}"
    if not is_transient_status(status):
        return PermanentLLMError(message, provider=provider, status_code=status)
    wait = retry_after_seconds(retry_after)
    return TransientLLMError(message, provider=provider, status_code=status, retry_after_s=wait)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now, at most an hour."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def shorten(text: str, limit: int = DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
