"""JOB_RETENTION_DAYS: how long a job or batch is kept once it has ended.

A job expires `retention` after it ended (succeeded, failed or cancelled); a batch `retention`
after it completed or was cancelled. A queued or running job and a batch still in progress or
cancelling never expire. Everything of a record goes with it (its result, its webhook delivery
state, its idempotency key); the tenant's usage counters stay. DynamoDB gives each ended record
a TTL attribute (dynamodb_items.py); SQLite deletes in the sweep (sqlite_purge.py); both follow
the rules here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.models import Batch, BatchStatus, Job

ENDED_BATCH = frozenset({BatchStatus.completed, BatchStatus.cancelled})


def ended_at(record: Job | Batch) -> datetime | None:
    """When the record ended, or None while it may still change."""
    if isinstance(record, Job):
        return (record.completed_at or record.updated_at) if record.status.is_terminal else None
    return (record.completed_at or record.created_at) if record.status in ENDED_BATCH else None


def expires_at(record: Job | Batch, retention: timedelta | None) -> datetime | None:
    """When the record may be deleted; None: kept (not ended, or no retention)."""
    ended = ended_at(record)
    return ended + retention if ended is not None and retention is not None else None


def retention_of(days: int) -> timedelta | None:
    """JOB_RETENTION_DAYS as a period; 0 keeps everything (None)."""
    return timedelta(days=days) if days > 0 else None
