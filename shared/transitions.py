"""Every job status change, decided once, in plain code on plain data.

A decision takes the job as a store has just read it and returns a `Change` (or None when the
job is not in a state the change applies to). A `Change` says everything the write must do: the
job's new record (with, in its `attempt_log`, every attempt that did not succeed), the batch
counters it moves, the usage counters it adds, the idempotency key it gives back. Stores apply a
Change atomically, only while the stored job is still `change.before` (a compare-and-set), and
know no rule of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

from shared.key_usage import KeyDeltas, key_deltas, rerun_hold, usage_rows
from shared.models import (
    ATTEMPT_LOG_LENGTH,
    AttemptOutcome,
    AttemptRecord,
    Completion,
    Job,
    JobError,
    JobStatus,
    WebhookDelivery,
)
from shared.usage import UsageCounters, UsageKey, usage_of

Ended = Literal[JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled]


@dataclass(frozen=True)
class AttemptFailure:
    """Why an attempt did not succeed, as its AttemptRecord keeps it: `code` (`http_503`,
    `timeout`, ...; see AttemptRecord), the provider whose error it was, if any."""

    code: str | None
    message: str
    provider: str | None = None


@dataclass(frozen=True)
class JobOutcome:
    """How a job ends: what `finish` writes.

    Applies only while the job's status is `expect` (and, with `attempt`, only while no later
    claim has happened: that fences off a worker whose lease ran out)."""

    status: Ended
    expect: JobStatus
    attempt: int | None = None
    result: Completion | None = None
    error: JobError | None = None  # None also clears a queued job's "retrying" note
    webhook: WebhookDelivery | None = None
    release_idempotency_key: bool = False  # a refused submit stays retryable with its key
    cached: bool = False  # the result came from the cache (found when the job was claimed)
    provider: str | None = None  # a failure's: the provider whose error ended the attempt


@dataclass(frozen=True)
class Change:
    """A job as read (`before`) and as it must be written (`after`)."""

    before: Job
    after: Job

    @property
    def moves_status(self) -> bool:
        return self.before.status is not self.after.status

    @cached_property
    def counter_deltas(self) -> dict[str, int]:
        """What the job's batch counters move by (empty for a job without a batch)."""
        if self.after.batch_id is None or not self.moves_status:
            return {}
        return {self.before.status.value: -1, self.after.status.value: +1}

    @cached_property
    def usage(self) -> UsageCounters | None:
        """What this change adds to the tenant's usage: only the change that ends the job."""
        ends = self.after.status.is_terminal and not self.before.status.is_terminal
        return usage_of(self.after) if ends else None

    @cached_property
    def key_deltas(self) -> KeyDeltas | None:
        """What this change moves on its API key's counters (shared/key_usage.py)."""
        return key_deltas(self.before, self.after)

    @property
    def released_key(self) -> str | None:
        """The idempotency key this change gives back, if any."""
        key = self.before.idempotency_key
        return key if key and self.after.idempotency_key is None else None


Decision = Callable[[Job], Change | None]


def created_usage(job: Job) -> UsageCounters | None:
    """What storing `job` adds to usage: a job stored already ended (a cache hit) counts once."""
    return usage_of(job) if job.status.is_terminal else None


def claim(job: Job, *, lease_until: datetime, now: datetime) -> Change | None:
    """queued (and due) → running, or running with a lapsed lease → running; attempts + 1.
    A job waiting for the job it joined is not claimed: that job's outcome settles it."""
    due = (
        job.status is JobStatus.queued
        and job.waiting_on is None
        and (job.not_before is None or _utc(job.not_before) <= _utc(now))
    )
    lapsed = job.status is JobStatus.running and (
        job.lease_until is None or _utc(job.lease_until) < _utc(now)
    )
    if not (due or lapsed):
        return None
    fields: dict[str, object] = {}
    if lapsed:  # the claim that held it is lost: its worker died, or overran its lease
        fields["attempt_log"] = _logged(job, now, AttemptOutcome.lost, LEASE_EXPIRED)
    return _change(
        job,
        now,
        status=JobStatus.running,
        attempts=job.attempts + 1,
        lease_until=lease_until,
        **fields,
    )


def requeue(
    job: Job,
    *,
    attempt: int,
    note: JobError,
    not_before: datetime | None,
    now: datetime,
    failure: AttemptFailure | None = None,
) -> Change | None:
    """running → queued for a retry, only for the claim that made `attempt`; the attempt is
    logged as `retrying` with `failure` (without one, with the note's message)."""
    if job.status is not JobStatus.running or job.attempts != attempt:
        return None
    why = failure or AttemptFailure(code=None, message=note.message)
    return _change(
        job,
        now,
        status=JobStatus.queued,
        error=note,
        lease_until=None,
        not_before=not_before,
        attempt_log=_logged(job, now, AttemptOutcome.retrying, why),
    )


def defer(
    job: Job, *, attempt: int, note: JobError, not_before: datetime, now: datetime
) -> Change | None:
    """running → queued until `not_before`, for the claim that made `attempt`, which is given
    back: no provider could be called (their shared quotas had no room), so no attempt was
    spent. The wait is added to `quota_waited_s`, which lengthens the job's retry budget."""
    if job.status is not JobStatus.running or job.attempts != attempt:
        return None
    waited = max((_utc(not_before) - _utc(now)).total_seconds(), 0.0)
    return _change(
        job,
        now,
        status=JobStatus.queued,
        attempts=attempt - 1,
        error=note,
        lease_until=None,
        not_before=not_before,
        quota_waited_s=job.quota_waited_s + waited,
    )


def finish(job: Job, outcome: JobOutcome, *, now: datetime) -> Change | None:
    """`outcome.expect` → `outcome.status`, with the result or error."""
    if job.status is not outcome.expect:
        return None
    if outcome.attempt is not None and job.attempts != outcome.attempt:
        return None
    fields: dict[str, object] = {
        "status": outcome.status,
        "error": outcome.error,
        "completed_at": now,
        "lease_until": None,
        "not_before": None,
    }
    if outcome.result is not None:
        fields["result"] = outcome.result
    if outcome.webhook is not None:
        fields["webhook"] = outcome.webhook
    if outcome.release_idempotency_key:
        fields["idempotency_key"] = None
    if outcome.cached:
        fields["cached"] = True
    if job.status is JobStatus.running and outcome.status is JobStatus.failed:
        fields["attempt_log"] = _logged(job, now, AttemptOutcome.failed, _failure_of(outcome))
    return _change(job, now, **fields)


def _failure_of(outcome: JobOutcome) -> AttemptFailure:
    error = outcome.error
    code, message = (error.code, error.message) if error else (None, "failed")
    return AttemptFailure(code=code, message=message, provider=outcome.provider)


# What a job that joined another (a follower) shares of its outcome: the LLM's own answers
# and refusals. Any other end (cancelled, erased, never run) leaves the follower to run itself.
SHARED_FAILURES = frozenset({"llm_rejected", "llm_unavailable"})


def follow(job: Job, *, attempt: int, leader_id: str, now: datetime) -> Change | None:
    """running → queued, waiting for `leader_id` (an identical job in flight) instead of calling
    the LLM: the claim that made `attempt` is given back, as it called nothing."""
    if job.status is not JobStatus.running or job.attempts != attempt or job.id == leader_id:
        return None
    return _change(
        job,
        now,
        status=JobStatus.queued,
        attempts=attempt - 1,
        coalesced_with=leader_id,
        error=None,
        lease_until=None,
        not_before=None,
    )


WebhookFor = Callable[[str | None], WebhookDelivery | None]


def settle(
    job: Job, *, leader_id: str, leader: Job | None, webhook_for: WebhookFor, now: datetime
) -> Change | None:
    """A follower of `leader_id` once that job (`leader`, None when erased) has ended: it ends
    with the leader's result or shared failure (`coalesced`), or else is released (queued on
    its own again). None while the leader runs, or when `job` no longer waits for it.
    `webhook_for(url)`: the new pending delivery of a job that ends (None without a URL)."""
    if job.waiting_on is None or job.waiting_on != leader_id:
        return None
    if leader is not None and not leader.status.is_terminal:
        return None
    if leader is not None and leader.status is JobStatus.succeeded:
        ended: dict[str, object] = {"status": JobStatus.succeeded, "result": leader.result}
    elif leader is not None and leader.error and leader.error.code in SHARED_FAILURES:
        ended = {"status": JobStatus.failed, "error": leader.error}
    else:
        return _change(job, now, coalesced_with=None)
    if (webhook := webhook_for(job.webhook_url)) is not None:
        ended["webhook"] = webhook
    return _change(
        job, now, **ended, coalesced=True, completed_at=now, lease_until=None, not_before=None
    )


def end_queued(job: Job, *, to: Ended, error: JobError | None, now: datetime) -> Change | None:
    """A queued job ended without running (its batch was cancelled or could not be queued)."""
    if job.status is not JobStatus.queued:
        return None
    return _change(job, now, status=to, error=error, completed_at=now, lease_until=None)


def retry_failed(job: Job, *, now: datetime) -> Change | None:
    """failed → queued: the job runs again as if new (POST /v1/batches/{id}/retry-failed).

    Its attempts start again from 0, so the retry gets a whole JOB_MAX_ATTEMPTS, and its retry
    budget counts from `retried_at`. Its error and any result are cleared, and so is its webhook
    state (a `job.*` event goes out again when it ends); its attempt log is kept, and the new
    run's attempts follow it numbered from 1 again (they started after `retried_at`). Usage: the
    failed run stays counted as it was (its request, its failure, its LLM calls, on the day it
    failed); the new run counts as a request of its own when it ends, with only its own attempts
    as LLM calls, so no call, token or failure is counted twice."""
    if job.status is not JobStatus.failed:
        return None
    return _change(
        job,
        now,
        status=JobStatus.queued,
        attempts=0,
        error=None,
        result=None,
        completed_at=None,
        lease_until=None,
        not_before=None,
        webhook=None,
        retried_at=now,
        coalesced=False,
        coalesced_with=None,
        key_hold=rerun_hold(job, now),
    )


def deletable(job: Job) -> bool:
    """A job may be erased (DELETE /v1/jobs/{id}) once it has ended: a queued one is cancelled
    first, a running one waits for its end, so no worker writes to a job that is gone and a
    batch's counters already hold its end."""
    return job.status.is_terminal


def restart(job: Job, *, now: datetime) -> Change | None:
    """A running job whose process is gone (embedded start-up), queued again; its attempt is
    logged as `lost`."""
    if job.status is not JobStatus.running:
        return None
    log = _logged(job, now, AttemptOutcome.lost, PROCESS_RESTARTED)
    return _change(job, now, status=JobStatus.queued, lease_until=None, attempt_log=log)


LEASE_EXPIRED = AttemptFailure(
    code="lease_expired", message="its lease ran out before it ended: claimed again"
)
PROCESS_RESTARTED = AttemptFailure(
    code="process_restarted", message="the process running it stopped: queued again"
)


def _logged(
    job: Job, now: datetime, outcome: AttemptOutcome, failure: AttemptFailure
) -> list[AttemptRecord]:
    """The job's attempt log with its current attempt added (the latest ATTEMPT_LOG_LENGTH).
    That attempt started when it was claimed: the running job's `updated_at`, as no other
    change writes a running job and stays running."""
    record = AttemptRecord(
        attempt=job.attempts,
        started_at=job.updated_at,
        ended_at=now,
        outcome=outcome,
        provider=failure.provider,
        code=failure.code,
        message=failure.message,
    )
    return [*job.attempt_log, record][-ATTEMPT_LOG_LENGTH:]


def _change(job: Job, now: datetime, **fields: object) -> Change:
    return Change(before=job, after=job.model_copy(update={**fields, "updated_at": now}))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class UsageTally:
    """What storing many jobs at once adds to usage, summed per tenant x day x model x provider
    (a batch whose requests were partly answered from the cache)."""

    def __init__(self) -> None:
        self.by_key: dict[UsageKey, UsageCounters] = {}

    def add(self, job: Job) -> None:
        counters = created_usage(job)
        if counters is None:
            return
        for key, row in usage_rows(job, counters):  # the tenant's row, and its key's
            held = self.by_key.get(key)
            self.by_key[key] = held.plus(row) if held is not None else row
