"""Provider quotas: how many calls and tokens each LLM provider may take per minute, counted
across every worker (GEMINI_RPM, GEMINI_TPM, OPENROUTER_RPM, OPENROUTER_TPM; docs/adr/0014).

The counting lives behind the ProviderQuota port (shared/ports.py; adapters in
shared/adapters/quota/); shared/adapters/llm/quoted.py takes a slot before each call. This module
holds what they share: the limits, and the window a slot is held for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import Settings

# A slot (a call, or a call's tokens) counts for a minute plus a second: a provider counts a call
# when it arrives, a little after the worker took its slot, and by a delay that varies from call
# to call. The second keeps two calls the worker saw 60 s apart from landing in one minute there.
QUOTA_WINDOW_S = 61.0


@dataclass(frozen=True)
class QuotaLimits:
    """A provider's calls (`rpm`) and tokens (`tpm`) per window; 0: not limited."""

    rpm: int = 0
    tpm: int = 0

    @property
    def limited(self) -> bool:
        return self.rpm > 0 or self.tpm > 0


NO_LIMITS = QuotaLimits()


def quota_limits(settings: Settings) -> dict[str, QuotaLimits]:
    """Each provider's limits, by the provider's name (`LLMProvider.name`)."""
    return {
        "gemini": QuotaLimits(settings.gemini_rpm, settings.gemini_tpm),
        "openrouter": QuotaLimits(settings.openrouter_rpm, settings.openrouter_tpm),
    }


def limits_of(limits: Mapping[str, QuotaLimits], provider: str) -> QuotaLimits:
    return limits.get(provider, NO_LIMITS)


def log_wait_s(times: list[float], limit: int, now: float, window_s: float) -> float:
    """Seconds until fewer than `limit` of the (ascending, still held) `times` are held."""
    if limit <= 0 or len(times) < limit:
        return 0.0
    return max(times[len(times) - limit] + window_s - now, 0.0)


def weighted_wait_s(
    spent: list[tuple[float, int]], limit: int, now: float, window_s: float
) -> float:
    """Seconds until the (ascending, still held) `spent` amounts add up to less than `limit`."""
    total = sum(amount for _, amount in spent)
    if limit <= 0 or total < limit:
        return 0.0
    for at, amount in spent:
        total -= amount
        if total < limit:
            return max(at + window_s - now, 0.0)
    return 0.0
