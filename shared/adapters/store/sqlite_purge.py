"""The retention purge of SqliteJobStore: what JOB_RETENTION_DAYS no longer keeps, deleted in
bounded chunks (shared/retention.py says what expires; the indexes are in sqlite_schema.py).

Each chunk is one write of at most `limit` rows, so the writer is never held for long: jobs that
ended before the cutoff, then batches that did, then batch idempotency keys older than their 24 h
window, then coalescing rows whose job is gone (a crash between a leader's end and its release
leaves them; the next identical request would take the key over anyway). A job's result, webhook
delivery state and idempotency key are in its row, and go with it; the usage counters are another
table, and stay.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from shared.adapters.store.sqlite_schema import (
    BATCH_ENDED,
    ENDED_BATCH,
    JOB_ENDED,
    TERMINAL_JOB,
    ts,
)

EXPIRED_JOBS = (
    "DELETE FROM jobs WHERE rowid IN"
    f" (SELECT rowid FROM jobs WHERE {TERMINAL_JOB} AND {JOB_ENDED} < ? LIMIT ?)"
)
EXPIRED_BATCHES = (
    "DELETE FROM batches WHERE rowid IN"
    f" (SELECT rowid FROM batches WHERE {ENDED_BATCH} AND {BATCH_ENDED} < ? LIMIT ?)"
)
EXPIRED_BATCH_KEYS = (
    "DELETE FROM batch_idempotency WHERE rowid IN"
    " (SELECT rowid FROM batch_idempotency WHERE created_at <= ? LIMIT ?)"
)

# WITHOUT ROWID tables: rows are named by their primary key
ORPHAN_KEYS = (
    "DELETE FROM coalescing_keys WHERE (tenant, cache_key) IN (SELECT tenant, cache_key"
    " FROM coalescing_keys AS k WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = k.holder) LIMIT ?)"
)
ORPHAN_FOLLOWERS = (
    "DELETE FROM job_followers WHERE (leader_id, follower_id) IN (SELECT leader_id, follower_id"
    " FROM job_followers AS f WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = f.leader_id) LIMIT ?)"
)


def ended_before(moment: datetime) -> str:
    """A bound for the JSON timestamps in `data` (pydantic's `…T10:42:07.123456Z`): those of
    instants before `moment`'s whole second sort below it, whatever their fraction or zone mark."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def purge_chunk(
    db: sqlite3.Connection, now: datetime, retention: timedelta, key_window: timedelta, limit: int
) -> int:
    """Delete up to `limit` rows expired at `now`; how many were deleted."""
    cutoff, keys_cutoff = ended_before(now - retention), str(ts(now - key_window))
    deleted = 0
    for sql, bound in (
        (EXPIRED_JOBS, cutoff),
        (EXPIRED_BATCHES, cutoff),
        (EXPIRED_BATCH_KEYS, keys_cutoff),
    ):
        if deleted < limit:
            deleted += db.execute(sql, (bound, limit - deleted)).rowcount
    for sql in (ORPHAN_KEYS, ORPHAN_FOLLOWERS):
        if deleted < limit:
            deleted += db.execute(sql, (limit - deleted,)).rowcount
    return deleted
