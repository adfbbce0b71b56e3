"""Webhook event bodies, rebuilt from the stored job or batch at each delivery attempt."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.models import Batch, Job, JobStatus, WebhookDelivery, WebhookState

JOB_EVENTS = {
    JobStatus.succeeded: "job.succeeded",
    JobStatus.failed: "job.failed",
    JobStatus.cancelled: "job.cancelled",
}
BATCH_COMPLETED = "batch.completed"


def event_type_for(subject: Job | Batch) -> str | None:
    """The event a finished job or batch announces; None for a job that is not finished."""
    if isinstance(subject, Batch):
        return BATCH_COMPLETED
    return JOB_EVENTS.get(subject.status)


def build_event(subject: Job | Batch, event_type: str) -> dict[str, Any]:
    """`{"type", "timestamp", "data"}`; the timestamp is when the event happened, so it is the
    same on every retry."""
    occurred = subject.completed_at or (
        subject.updated_at if isinstance(subject, Job) else subject.created_at
    )
    return {
        "type": event_type,
        "timestamp": _iso(occurred),
        "data": subject.public().model_dump(mode="json", exclude={"webhook"}),
    }


def pending_delivery(now: datetime, schedule: list[float], msg_id: str) -> WebhookDelivery:
    """A new delivery whose first attempt is due after `schedule[0]` seconds."""
    return WebhookDelivery(
        id=msg_id,
        state=WebhookState.pending,
        attempts=0,
        next_attempt_at=now + timedelta(seconds=schedule[0]),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
