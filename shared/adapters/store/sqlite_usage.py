"""Usage counters in SQLite: the `usage_counters` table, the write that adds to it, and its read.

One row per tenant x UTC day x model x provider (WITHOUT ROWID: the primary key is the table's
order, so a tenant's period is one range of it). What a job adds is decided by shared.transitions
(`Change.usage`, `created_usage`) and written here in the transaction of the job's change, so a
change that does not happen counts nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import date
from typing import Any

import aiosqlite

from shared.usage import (
    COUNTER_FIELDS,
    LATENCY_BUCKETS,
    UsageCounters,
)

LATENCY_COLUMNS = tuple(f"lat_{k:02d}" for k in range(LATENCY_BUCKETS))
KEY_COLUMNS = ("tenant", "day", "model", "provider")


SUMMED_COLUMNS = [*COUNTER_FIELDS, *LATENCY_COLUMNS]
_ADD = f"""INSERT INTO usage_counters ({", ".join((*KEY_COLUMNS, *SUMMED_COLUMNS))})
    VALUES ({", ".join("?" for _ in (*KEY_COLUMNS, *SUMMED_COLUMNS))})
    ON CONFLICT ({", ".join(KEY_COLUMNS)}) DO UPDATE SET
    {", ".join(f"{name} = {name} + excluded.{name}" for name in SUMMED_COLUMNS)}"""
_ADD_CODE = (
    "UPDATE usage_counters SET failed_by_code = json_set(failed_by_code, ?,"
    " coalesce(json_extract(failed_by_code, ?), 0) + ?)"
    f" WHERE {' AND '.join(f'{c} = ?' for c in KEY_COLUMNS)}"
)


def add_usage(db: sqlite3.Connection, tenant: str, counters: UsageCounters) -> None:
    """Add `counters` (what shared.usage says a job adds) to its row, creating it if needed."""
    key = (tenant, counters.day.isoformat(), counters.model, counters.provider)
    summed = [getattr(counters, name) for name in COUNTER_FIELDS] + list(counters.latency)
    db.execute(_ADD, (*key, *summed))
    for code, count in counters.failed_by_code.items():
        path = '$."' + code.replace('"', "") + '"'
        db.execute(_ADD_CODE, (path, path, count, *key))


USAGE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage_counters (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    {" ".join(f"{name} INTEGER NOT NULL DEFAULT 0," for name in SUMMED_COLUMNS)}
    failed_by_code TEXT NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (tenant, day, model, provider)
) WITHOUT ROWID;

-- Usage moved by triggers once; the store now writes what shared.transitions decides.
DROP TRIGGER IF EXISTS jobs_usage_on_end;
DROP TRIGGER IF EXISTS jobs_usage_on_insert;
"""

_READ_COLUMNS = ("day", "model", "provider", *SUMMED_COLUMNS, "failed_by_code")
USAGE_READ = (  # one range of the primary key: this tenant's rows for the days asked
    f"SELECT {', '.join(_READ_COLUMNS)} FROM usage_counters"
    " WHERE tenant = ? AND day BETWEEN ? AND ? ORDER BY day, model, provider"
)


def usage_params(tenant: str, start: date, end: date) -> tuple[str, str, str]:
    return tenant, start.isoformat(), end.isoformat()


async def read_usage(
    db: aiosqlite.Connection, tenant: str, start: date, end: date
) -> list[UsageCounters]:
    rows = await db.execute_fetchall(USAGE_READ, usage_params(tenant, start, end))
    return [_counters(row) for row in rows]


def _counters(row: Sequence[Any]) -> UsageCounters:
    values = dict(zip(_READ_COLUMNS, row, strict=True))
    return UsageCounters(
        **{name: values[name] for name in ("day", "model", "provider", *COUNTER_FIELDS)},
        failed_by_code=json.loads(values["failed_by_code"]),
        latency=[values[column] for column in LATENCY_COLUMNS],
    )
