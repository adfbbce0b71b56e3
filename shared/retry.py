"""RetryPolicy: how long a job keeps trying through transient LLM failures.

Retries are bounded by a time budget counted from the job's creation (or from when retry-failed
queued it again: `retried_at`), JOB_RETRY_BUDGET_S, so a provider outage of minutes is absorbed
whatever the attempt count; delays grow exponentially from JOB_RETRY_BASE_S up to
JOB_RETRY_MAX_DELAY_S, with jitter so a crowd of jobs that failed together does not retry
together. JOB_MAX_ATTEMPTS stays as a guard against a job that keeps
crashing its worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from shared.models import Job, utcnow


@dataclass(frozen=True)
class RetryPolicy:
    budget_s: float
    base_s: float
    max_delay_s: float
    max_attempts: int
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """The wait before the next attempt: capped exponential with jitter, or longer if the
        provider asked for it (its Retry-After)."""
        ceiling = min(self.base_s * 2 ** max(attempts - 1, 0), self.max_delay_s)
        return max(self.jittered(ceiling), retry_after_s or 0.0)

    def jittered(self, seconds: float) -> float:
        """Between half and all of `seconds` ("equal jitter")."""
        return seconds / 2 + self.rng.uniform(0, seconds / 2)

    def allows(self, job: Job, delay_s: float) -> bool:
        """May the job try again after `delay_s`? Only within its budget and attempt guard."""
        budget = self.budget_s + job.quota_waited_s  # waits for a provider quota are not retries
        deadline = (job.retried_at or job.created_at) + timedelta(seconds=budget)
        in_budget = utcnow() + timedelta(seconds=delay_s) <= deadline
        return in_budget and job.attempts < self.max_attempts
