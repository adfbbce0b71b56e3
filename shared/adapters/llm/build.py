"""Chooses the LLM provider(s) from Settings; SDKs are imported only in the branch using them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.adapters.llm.circuit import CircuitBreaker
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.quoted import QuotedProvider
from shared.config import Settings
from shared.ports import LLMProvider, ProviderQuota

if TYPE_CHECKING:
    from shared.adapters.llm.gemini import GeminiConnection

log = logging.getLogger(__name__)


def build_llm(settings: Settings, quota: ProviderQuota | None = None) -> LLMProvider:
    """Gemini first and OpenRouter as fallback; whichever has a key; offline when neither has.
    With `quota`, every call to either first takes a slot of its shared quota."""
    providers = [p for p in (_gemini(settings), _openrouter(settings)) if p is not None]
    if quota is not None:
        providers = [QuotedProvider(p, quota) for p in providers]
    if not providers:
        from shared.adapters.llm.offline import OfflineProvider

        log.warning(
            "NO LLM KEY SET: every job is answered by the offline provider (provider 'offline', "
            "canned text). Set GEMINI_API_KEY (or GOOGLE_GENAI_USE_VERTEXAI) and/or "
            "OPENROUTER_API_KEY for real answers."
        )
        return OfflineProvider()

    def breaker() -> CircuitBreaker:
        return CircuitBreaker(settings.circuit_failure_threshold, settings.circuit_cooldown_s)

    fallback = providers[1] if len(providers) > 1 else None
    return FallbackLLM(providers[0], fallback, breaker(), breaker() if fallback else None)


def _gemini(s: Settings) -> LLMProvider | None:
    if not (s.gemini_api_key or s.google_genai_use_vertexai):
        return None
    from shared.adapters.llm.gemini import GeminiProvider

    connection, connections = gemini_connection(s), s.worker_concurrency
    return GeminiProvider(connection, s.gemini_model, s.llm_timeout_s, connections=connections)


def gemini_connection(s: Settings) -> GeminiConnection:
    """The Gemini API with GEMINI_API_KEY, or Vertex AI when GOOGLE_GENAI_USE_VERTEXAI is set."""
    from shared.adapters.llm.gemini import GeminiConnection

    key = s.gemini_api_key.get_secret_value() if s.gemini_api_key else None
    if not s.google_genai_use_vertexai:
        return GeminiConnection(api_key=key, base_url=s.gemini_base_url)
    return GeminiConnection(
        api_key=key,
        base_url=s.gemini_base_url,
        vertexai=True,
        project=s.google_cloud_project,
        location=s.google_cloud_location,
    )


def _openrouter(s: Settings) -> LLMProvider | None:
    if not s.openrouter_api_key:
        return None
    from shared.adapters.llm.openrouter import OpenRouterProvider

    key = s.openrouter_api_key.get_secret_value()
    model, url = s.openrouter_model, s.openrouter_base_url
    return OpenRouterProvider(key, model, url, s.llm_timeout_s, connections=s.worker_concurrency)
