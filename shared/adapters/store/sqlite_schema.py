"""SQLite schema and row codecs for SqliteJobStore.

Each row holds the full record as pydantic JSON (`data`) plus copies of the fields that SQL filters,
orders or counts on. Datetimes in those columns are fixed-width UTC ISO strings, so comparing and
sorting the text compares the instants.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.adapters.store.sqlite_key_counters import KEY_COUNTERS_SCHEMA
from shared.adapters.store.sqlite_usage import SUMMED_COLUMNS, USAGE_SCHEMA
from shared.models import Batch, BatchCounts, Job, WebhookDelivery

# When a job or batch ended (shared/retention.py), as indexed for the retention purge
JOB_ENDED = "coalesce(json_extract(data, '$.completed_at'), json_extract(data, '$.updated_at'))"
BATCH_ENDED = "coalesce(json_extract(data, '$.completed_at'), json_extract(data, '$.created_at'))"
TERMINAL_JOB = "status IN ('succeeded', 'failed', 'cancelled')"
ENDED_BATCH = "status IN ('completed', 'cancelled')"

# The retention purge (sqlite_purge.py) finds what ended long ago without a scan.
RETENTION_SCHEMA = f"""
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs ({JOB_ENDED}) WHERE {TERMINAL_JOB};
CREATE INDEX IF NOT EXISTS batches_ended ON batches ({BATCH_ENDED}) WHERE {ENDED_BATCH};
CREATE INDEX IF NOT EXISTS batch_idempotency_created ON batch_idempotency (created_at);
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    batch_id TEXT,
    created_at TEXT NOT NULL,
    idempotency_key TEXT,
    lease_until TEXT,
    webhook_state TEXT,
    webhook_next_at TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_tenant_created ON jobs (tenant, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_tenant_status_created ON jobs (tenant, status, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_batch_created ON jobs (batch_id, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_webhook_due ON jobs (webhook_state, webhook_next_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created_at TEXT,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    queued INTEGER NOT NULL,
    running INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    webhook_state TEXT,
    webhook_next_at TEXT,
    data TEXT NOT NULL
);
-- a tenant's batches newest first (GET /v1/batches): BATCH_LIST_SCHEMA, after the migration
DROP INDEX IF EXISTS batches_tenant;

CREATE TABLE IF NOT EXISTS batch_idempotency (
    tenant TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);
CREATE INDEX IF NOT EXISTS batches_webhook_due ON batches (webhook_state, webhook_next_at);

-- Counters moved by a trigger once; the store now writes what shared.transitions decides.
DROP TRIGGER IF EXISTS jobs_batch_counts;

-- Coalescing (shared/coalescing.py): the job in flight for each tenant x cache key, and the
-- jobs waiting for a job's outcome (rows of a job go once its followers are settled).
CREATE TABLE IF NOT EXISTS coalescing_keys (
    tenant TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    holder TEXT NOT NULL,
    PRIMARY KEY (tenant, cache_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_followers (
    leader_id TEXT NOT NULL,
    follower_id TEXT NOT NULL,
    PRIMARY KEY (leader_id, follower_id)
) WITHOUT ROWID;

-- A ping after SQLITE_FULL writes a row here and deletes it: is there room for a write again?
CREATE TABLE IF NOT EXISTS space_probe (filler BLOB);
"""
    + RETENTION_SCHEMA
    + USAGE_SCHEMA
    + KEY_COUNTERS_SCHEMA
)

# Run after `add_batch_created_at`: a file made before the column existed gets it first.
BATCH_LIST_SCHEMA = """
CREATE INDEX IF NOT EXISTS batches_tenant_created ON batches (tenant, created_at, id);
"""

# The operator's listings across tenants (sqlite_admin.py); run after the migration too.
ADMIN_SCHEMA = """
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at, id);
CREATE INDEX IF NOT EXISTS batches_created ON batches (created_at, id);
CREATE INDEX IF NOT EXISTS batches_status_created ON batches (status, created_at, id);
"""

COUNT_COLUMNS = tuple(BatchCounts.model_fields)
JOB_COLUMNS = (
    "id",
    "tenant",
    "status",
    "batch_id",
    "created_at",
    "idempotency_key",
    "lease_until",
    "webhook_state",
    "webhook_next_at",
)
BATCH_COLUMNS = (
    "id",
    "tenant",
    "created_at",
    "status",
    *COUNT_COLUMNS,
    "webhook_state",
    "webhook_next_at",
)
_JOB_FIELDS = (*(c for c in JOB_COLUMNS if not c.startswith("webhook_")), "webhook")
_BATCH_FIELDS = ("id", "tenant", "created_at", "status", "counts", "webhook")


def ts(value: datetime | None) -> str | None:
    """A fixed-width UTC text form that sorts like the instant (naive datetimes count as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _webhook_columns(hook: WebhookDelivery | None) -> dict[str, Any]:
    if hook is None:
        return {"webhook_state": None, "webhook_next_at": None}
    return {"webhook_state": hook.state.value, "webhook_next_at": ts(hook.next_attempt_at)}


def job_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for whichever Job fields are given (validated values)."""
    cols = {k: fields[k] for k in ("id", "tenant", "batch_id") if k in fields}
    if "idempotency_key" in fields:
        cols["idempotency_key"] = fields["idempotency_key"] or None
    if "status" in fields:
        cols["status"] = fields["status"].value
    cols |= {k: ts(fields[k]) for k in ("created_at", "lease_until") if k in fields}
    if "webhook" in fields:
        cols |= _webhook_columns(fields["webhook"])
    return cols


def batch_columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for whichever Batch fields are given (validated values)."""
    cols = {k: fields[k] for k in ("id", "tenant") if k in fields}
    if "created_at" in fields:
        cols["created_at"] = ts(fields["created_at"])
    if "status" in fields:
        cols["status"] = fields["status"].value
    if "counts" in fields:
        cols |= fields["counts"].model_dump()
    if "webhook" in fields:
        cols |= _webhook_columns(fields["webhook"])
    return cols


def job_row(job: Job) -> tuple[Any, ...]:
    cols = job_columns({f: getattr(job, f) for f in _JOB_FIELDS})
    return (*(cols[c] for c in JOB_COLUMNS), job.model_dump_json())


def batch_row(batch: Batch) -> tuple[Any, ...]:
    cols = batch_columns({f: getattr(batch, f) for f in _BATCH_FIELDS})
    return (*(cols[c] for c in BATCH_COLUMNS), batch.model_dump_json(exclude={"counts"}))


def create_schema(db: sqlite3.Connection) -> None:
    """Create what is missing and migrate what an older version made (idempotent; safe while
    other processes open the same file)."""
    db.executescript(SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    try:
        add_batch_created_at(db)
        add_usage_columns(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    db.executescript(BATCH_LIST_SCHEMA + ADMIN_SCHEMA)


def add_batch_created_at(db: sqlite3.Connection) -> None:
    """Migrate a file made before `batches.created_at` existed: add the column and fill it
    from each batch's record."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    if "created_at" not in columns:
        db.execute("ALTER TABLE batches ADD COLUMN created_at TEXT")
    missing = "SELECT id, json_extract(data, '$.created_at') FROM batches WHERE created_at IS NULL"
    filled = [(ts(datetime.fromisoformat(at)), batch_id) for batch_id, at in db.execute(missing)]
    db.executemany("UPDATE batches SET created_at = ? WHERE id = ?", filled)


def add_usage_columns(db: sqlite3.Connection) -> None:
    """Migrate a file made before a usage counter existed (`coalesced`): add its column."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(usage_counters)")}
    for name in SUMMED_COLUMNS:
        if name not in columns:
            db.execute(f"ALTER TABLE usage_counters ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0")


def batch_from_row(row: Any) -> Batch:
    """Counts live in their columns (moved with each job's change), the rest in `data`."""
    batch = Batch.model_validate_json(row[0])
    counts = BatchCounts(**dict(zip(COUNT_COLUMNS, row[1:], strict=True)))
    return batch.model_copy(update={"counts": counts})
