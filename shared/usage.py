"""Usage counters: what a finished job adds to its tenant's figures for a day, model and provider.

Stores move the counters in the same write that ends a job (or creates it already ended: a cache
hit), so a write whose compare-and-set fails counts nothing and a redelivered job counts once.
`usage_of` is the one definition of what a job adds; shared.transitions says when (the change
that ends a job, or storing it already ended), and every store writes what it says.

- A job counts on the UTC day it ended (`completed_at`), under the model that answered (else the
  model it asked for, else "default") and the provider that answered: "cache" for a cache hit,
  "none" when no provider answered (failed, cancelled).
- coalesced: a job answered by joining an identical job in flight (shared/coalescing.py): its
  answer's tokens, latency and fallback count with the job it joined, never twice.
- llm_calls: the job's attempts (deliveries that called the LLM), less the one that found the
  attempts used up (`attempts_exhausted` calls nothing); 0 for a cache hit. One attempt is one
  call of FallbackLLM, which may try both providers.
- fallbacks: answers the fallback provider gave (FallbackLLM sets `Completion.fallback`).
- Tokens, latency and fallbacks come only from answers the LLM gave for this job (not cache hits,
  not answers shared by coalescing).
- Latency: a histogram of `Completion.latency_ms` (the answering provider's call) in
  LATENCY_BUCKETS log-spaced buckets; see `percentile_ms` for the error that costs.
"""

from __future__ import annotations

import bisect
import math
from datetime import UTC, date, datetime
from typing import NamedTuple

from pydantic import BaseModel, Field

from shared.models import Job, JobStatus

CACHE_PROVIDER = "cache"
NO_PROVIDER = "none"
DEFAULT_MODEL = "default"
NOT_A_CALL = "attempts_exhausted"  # the attempt that finds the budget spent calls no LLM

LATENCY_BUCKETS = 40
LATENCY_MIN_MS = 10
LATENCY_MAX_MS = 120_000
# Bucket k holds [BOUNDS[k], BOUNDS[k + 1]) ms; the first also holds what is faster, the last
# what is slower. Whole milliseconds, so SQL and Python put a latency in the same bucket.
BOUNDS: tuple[int, ...] = tuple(
    round(LATENCY_MIN_MS * (LATENCY_MAX_MS / LATENCY_MIN_MS) ** (k / LATENCY_BUCKETS))
    for k in range(LATENCY_BUCKETS + 1)
)
# What a bucket reports: the geometric middle of its bounds.
BUCKET_MS: tuple[int, ...] = tuple(
    round(math.sqrt(BOUNDS[k] * BOUNDS[k + 1])) for k in range(LATENCY_BUCKETS)
)


def latency_bucket(latency_ms: int) -> int:
    return min(max(bisect.bisect_right(BOUNDS, latency_ms) - 1, 0), LATENCY_BUCKETS - 1)


class UsageKey(NamedTuple):
    tenant: str
    day: date
    model: str
    provider: str


class UsageCounters(BaseModel):
    """One tenant's figures for one day x model x provider (or any sum of those)."""

    day: date
    model: str
    provider: str
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    cache_hits: int = 0
    coalesced: int = 0
    llm_calls: int = 0
    fallbacks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    failed_by_code: dict[str, int] = Field(default_factory=dict)
    latency: list[int] = Field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    def plus(self, other: UsageCounters) -> UsageCounters:
        """These figures and `other`'s added up (keeping this day, model and provider)."""
        sums = {name: getattr(self, name) + getattr(other, name) for name in COUNTER_FIELDS}
        codes = dict(self.failed_by_code)
        for code, count in other.failed_by_code.items():
            codes[code] = codes.get(code, 0) + count
        latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        return self.model_copy(update={**sums, "failed_by_code": codes, "latency": latency})

    def percentile_ms(self, p: float) -> int | None:
        """The p-th percentile (nearest rank) of the LLM latencies counted: the middle of the
        bucket that holds it. Buckets span a factor of about 1.27 (up to 1.3 below 100 ms), so
        the figure is within 13% of the true percentile from 26 ms to 120 s, within 15% below
        26 ms, and anything slower than 120 s reads as 107 s. None when nothing was counted."""
        total = sum(self.latency)
        if total == 0:
            return None
        rank, seen = math.ceil(p / 100 * total), 0
        for bucket, count in enumerate(self.latency):
            seen += count
            if seen >= max(rank, 1):
                return BUCKET_MS[bucket]
        return BUCKET_MS[-1]


COUNTER_FIELDS = (
    "requests",
    "succeeded",
    "failed",
    "cancelled",
    "cache_hits",
    "coalesced",
    "llm_calls",
    "fallbacks",
    "input_tokens",
    "output_tokens",
)


def usage_key(job: Job) -> UsageKey:
    result = job.result
    ended = job.completed_at or job.updated_at
    model = result.model if result is not None else job.request.model or DEFAULT_MODEL
    if job.cached:
        provider = CACHE_PROVIDER
    else:
        provider = result.provider if result is not None else NO_PROVIDER
    return UsageKey(job.tenant, utc_day(ended), model, provider)


def usage_of(job: Job) -> UsageCounters:
    """What a job that has just ended adds to its key's counters."""
    key = usage_key(job)
    status, result = job.status, job.result
    shared = job.cached or job.coalesced  # an answer this job's own LLM call did not give
    answered = status is JobStatus.succeeded and not shared and result is not None
    code = job.error.code if status is JobStatus.failed and job.error else None
    latency = [0] * LATENCY_BUCKETS
    if answered and result is not None:
        latency[latency_bucket(result.latency_ms)] = 1
    return UsageCounters(
        day=key.day,
        model=key.model,
        provider=key.provider,
        requests=1,
        succeeded=int(status is JobStatus.succeeded),
        failed=int(status is JobStatus.failed),
        cancelled=int(status is JobStatus.cancelled),
        cache_hits=int(job.cached),
        coalesced=int(job.coalesced),
        llm_calls=0 if job.cached else max(job.attempts - (code == NOT_A_CALL), 0),
        fallbacks=int(answered and result is not None and result.fallback),
        input_tokens=result.usage.input_tokens if answered and result else 0,
        output_tokens=result.usage.output_tokens if answered and result else 0,
        failed_by_code={code or "unknown": 1} if status is JobStatus.failed else {},
        latency=latency,
    )


def utc_day(moment: datetime) -> date:
    """The UTC date of `moment` (naive datetimes count as UTC)."""
    return moment.date() if moment.tzinfo is None else moment.astimezone(UTC).date()
