"""Writes a shared.transitions.Change into SQLite: I/O only, no rule of its own.

A change is decided and written inside one write transaction of the single writer connection,
so the job it was decided on cannot change in between: the read is the compare of the
compare-and-set. The job's row, its batch's counters, its tenant's usage and its API key's counters
(sqlite_key_counters.py) move together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from shared.adapters.store.sqlite_key_counters import apply_key_deltas
from shared.adapters.store.sqlite_schema import COUNT_COLUMNS, JOB_COLUMNS, job_row
from shared.adapters.store.sqlite_usage import add_usage
from shared.key_usage import key_usage_row
from shared.models import Job
from shared.transitions import Change, Decision

READ_JOB = "SELECT data FROM jobs WHERE id = ?"
WRITE_JOB = (
    f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in JOB_COLUMNS[1:])}, data = ? WHERE id = ?"
)
MOVE_COUNTERS = (
    f"UPDATE batches SET {', '.join(f'{c} = {c} + ?' for c in COUNT_COLUMNS if c != 'total')}"
    " WHERE id = ?"
)
MOVED = tuple(c for c in COUNT_COLUMNS if c != "total")


def change_jobs(db: sqlite3.Connection, job_ids: Sequence[str], decide: Decision) -> list[Change]:
    """Read, decide and write each job in turn (call inside a write transaction)."""
    changes = []
    for job_id in job_ids:
        row = db.execute(READ_JOB, (job_id,)).fetchone()
        change = decide(Job.model_validate_json(row[0])) if row else None
        if change is not None:
            write_change(db, change)
            changes.append(change)
    return changes


def write_change(db: sqlite3.Connection, change: Change) -> None:
    job_id, *columns = job_row(change.after)
    db.execute(WRITE_JOB, (*columns, job_id))
    deltas = change.counter_deltas
    if deltas:
        moves = [deltas.get(column, 0) for column in MOVED]
        db.execute(MOVE_COUNTERS, (*moves, change.after.batch_id))
    usage = change.usage
    if usage is not None:
        add_usage(db, change.after.tenant, usage)
        if (keyed := key_usage_row(change.after, usage)) is not None:
            add_usage(db, *keyed)
    if change.key_deltas is not None:
        apply_key_deltas(db, change.key_deltas)
