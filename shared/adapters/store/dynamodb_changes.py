"""What each status change does to a job or batch, as pure functions.

Each returns the changed record, or None when the record is not in a state the change applies
to. DynamoDbJobStore applies them to a record it has just read and writes the result only if
the record's version is still the one it read, so the check here and the write are one
compare-and-set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.adapters.store.dynamodb_items import utc
from shared.adapters.store.outcome import outcome_changes
from shared.models import (
    Batch,
    BatchStatus,
    Job,
    JobError,
    JobStatus,
    WebhookDelivery,
    utcnow,
)
from shared.ports import JobOutcome


def claimed(job: Job, lease_until: datetime, now: datetime) -> Job | None:
    waiting = job.status is JobStatus.queued and (
        job.not_before is None or utc(job.not_before) <= utc(now)
    )
    lease_over = job.status is JobStatus.running and (
        job.lease_until is None or utc(job.lease_until) < utc(now)
    )
    if not (waiting or lease_over):
        return None
    return _touched(
        job, status=JobStatus.running, attempts=job.attempts + 1, lease_until=lease_until
    )


def requeued(job: Job, attempt: int, note: JobError, not_before: datetime | None) -> Job | None:
    if job.status is not JobStatus.running or job.attempts != attempt:
        return None
    return _touched(
        job, status=JobStatus.queued, error=note, lease_until=None, not_before=not_before
    )


def finished(job: Job, outcome: JobOutcome) -> Job | None:
    if job.status is not outcome.expect:
        return None
    if outcome.attempt is not None and job.attempts != outcome.attempt:
        return None
    now = utcnow()
    return _touched(job, now=now, status=outcome.status, **outcome_changes(outcome, now))


def ended(job: Job, to: JobStatus, error: JobError | None) -> Job | None:
    """A queued job of a batch cancelled or failed with it."""
    if job.status is not JobStatus.queued:
        return None
    now = utcnow()
    return _touched(job, status=to, error=error, completed_at=now, lease_until=None, now=now)


def restarted(job: Job) -> Job | None:
    """A running job whose process is gone, queued again."""
    if job.status is not JobStatus.running:
        return None
    return _touched(job, status=JobStatus.queued, lease_until=None)


def with_webhook(job: Job, delivery: WebhookDelivery) -> Job:
    return job.model_copy(update={"webhook": delivery})


def webhook_leased(webhook: WebhookDelivery, lease_until: datetime) -> WebhookDelivery:
    return webhook.model_copy(update={"next_attempt_at": lease_until})


def marked(
    batch: Batch,
    expect: Sequence[BatchStatus],
    to: BatchStatus,
    completed_at: datetime | None,
    webhook: WebhookDelivery | None,
) -> Batch | None:
    if batch.status not in {BatchStatus(status) for status in expect}:
        return None
    changes: dict[str, object] = {"status": BatchStatus(to)}
    if completed_at is not None:
        changes["completed_at"] = completed_at
    if webhook is not None:
        changes["webhook"] = webhook
    return batch.model_copy(update=changes)


def _touched(job: Job, *, now: datetime | None = None, **changes: object) -> Job:
    return job.model_copy(update={**changes, "updated_at": now or utcnow()})
