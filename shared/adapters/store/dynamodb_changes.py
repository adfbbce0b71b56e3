"""Batch status marks and webhook bookkeeping as pure functions on a record just read.

(A job's status changes are decided by shared.transitions, for every store.) Each returns the
changed record, or None when the record is not in a state the change applies to;
DynamoDbJobStore writes the result only if the record's version is still the one it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.models import (
    Batch,
    BatchStatus,
    Job,
    WebhookDelivery,
    WebhookState,
    utcnow,
)
from shared.transitions import Change


def with_webhook(job: Job, delivery: WebhookDelivery) -> Change:
    """Delivery bookkeeping on a job: no status moves, so nothing moves with it."""
    return Change(before=job, after=job.model_copy(update={"webhook": delivery}))


def webhook_leased(webhook: WebhookDelivery, lease_until: datetime) -> WebhookDelivery:
    return webhook.model_copy(update={"next_attempt_at": lease_until})


def is_due(webhook: WebhookDelivery | None, now: datetime) -> bool:
    """Pending and due by `now`: not delivered, given up, or leased by another sweeper since
    the (eventually consistent) index said it was due."""
    if webhook is None or webhook.state is not WebhookState.pending:
        return False
    return webhook.next_attempt_at is not None and webhook.next_attempt_at <= now


def marked(
    batch: Batch,
    expect: Sequence[BatchStatus],
    to: BatchStatus,
    completed_at: datetime | None,
    webhook: WebhookDelivery | None,
    reopen: bool = False,
) -> Batch | None:
    if batch.status not in {BatchStatus(status) for status in expect}:
        return None
    changes: dict[str, object] = {"status": BatchStatus(to)}
    if reopen:
        changes |= {"completed_at": None, "webhook": None}
    if completed_at is not None:
        changes["completed_at"] = completed_at
    if webhook is not None:
        changes["webhook"] = webhook
    return batch.model_copy(update=changes)


def _touched(job: Job, *, now: datetime | None = None, **changes: object) -> Job:
    return job.model_copy(update={**changes, "updated_at": now or utcnow()})
