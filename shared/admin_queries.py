"""What the operator reads across tenants (the `AdminStore` port): filters and counts as data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.models import Batch, BatchStatus, Job, JobStatus, WebhookState

# Most records one listing call may read to fill a page when a filter drops most of them; the
# page then comes back short, with a cursor that goes on from where the reading stopped.
READ_BUDGET = 2_000


@dataclass(frozen=True)
class JobQuery:
    """Every tenant's jobs, newest first, narrowed by any of these (all optional)."""

    tenant: str | None = None
    status: JobStatus | None = None
    batch_id: str | None = None
    created_from: datetime | None = None  # included
    created_to: datetime | None = None  # excluded


@dataclass(frozen=True)
class BatchQuery:
    """Every tenant's batches, newest first."""

    tenant: str | None = None
    status: BatchStatus | None = None


@dataclass(frozen=True)
class QueueBacklog:
    """Jobs waiting and running, by queue (single submits, batch jobs), and the oldest wait."""

    queued_single: int
    queued_batch: int
    running: int
    oldest_queued_at: datetime | None


def failing_first(subjects: list[Job | Batch]) -> list[Job | Batch]:
    """Deliveries that gave up first, then those retrying, most attempts first."""

    def order(subject: Job | Batch) -> tuple[bool, int, str]:
        hook = subject.webhook
        attempts = hook.attempts if hook else 0
        return (hook is None or hook.state is not WebhookState.failed, -attempts, subject.id)

    return sorted(subjects, key=order)
