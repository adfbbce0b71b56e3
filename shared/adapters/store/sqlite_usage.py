"""Usage counters in SQLite: the `usage_counters` table, the triggers that move it, and its read.

One row per tenant x UTC day x model x provider (WITHOUT ROWID: the primary key is the table's
order, so a tenant's period is one range of it). Two triggers on `jobs` add what a job that ends
contributes, inside the statement that ends it: AFTER UPDATE OF status (queued/running → an end,
whoever writes it: finish, end_queued_jobs) and AFTER INSERT (a cache hit stored already
succeeded). A compare-and-set that matches no row fires nothing, so a redelivered job counts
once. The SQL restates `shared.usage.usage_of`; the store contract holds both to the same figures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import aiosqlite

from shared.usage import (
    BOUNDS,
    CACHE_PROVIDER,
    COUNTER_FIELDS,
    DEFAULT_MODEL,
    LATENCY_BUCKETS,
    NO_PROVIDER,
    NOT_A_CALL,
    UsageCounters,
)

LATENCY_COLUMNS = tuple(f"lat_{k:02d}" for k in range(LATENCY_BUCKETS))
KEY_COLUMNS = ("tenant", "day", "model", "provider")
ENDED = "('succeeded', 'failed', 'cancelled')"


def _field(path: str) -> str:
    return f"json_extract(NEW.data, '$.{path}')"


_CACHED = f"coalesce({_field('cached')}, 0)"
_LATENCY = f"coalesce({_field('result.latency_ms')}, 0)"
_BUCKET = (
    "CASE "
    + " ".join(f"WHEN {_LATENCY} < {BOUNDS[k + 1]} THEN {k}" for k in range(LATENCY_BUCKETS - 1))
    + f" ELSE {LATENCY_BUCKETS - 1} END"
)
_CODE = f"coalesce({_field('error.code')}, 'unknown')"
# The ended job (NEW) as the figures usage_of reads from it.
_JOB = f"""SELECT
    NEW.tenant AS tenant,
    coalesce(date(coalesce({_field("completed_at")}, {_field("updated_at")})), date('now')) AS day,
    coalesce({_field("result.model")}, nullif({_field("request.model")}, ''), '{DEFAULT_MODEL}')
        AS model,
    CASE WHEN {_CACHED} THEN '{CACHE_PROVIDER}'
        ELSE coalesce({_field("result.provider")}, '{NO_PROVIDER}') END AS provider,
    NEW.status AS status,
    {_CACHED} AS cached,
    (NEW.status = 'succeeded' AND NOT {_CACHED} AND {_field("result")} IS NOT NULL) AS answered,
    coalesce({_field("attempts")}, 0) AS attempts,
    CASE WHEN NEW.status = 'failed' THEN {_CODE} END AS code,
    coalesce({_field("result.fallback")}, 0) AS fallback,
    coalesce({_field("result.usage.input_tokens")}, 0) AS input_tokens,
    coalesce({_field("result.usage.output_tokens")}, 0) AS output_tokens,
    {_BUCKET} AS bucket"""
_ADDED = {
    "requests": "1",
    "succeeded": "status = 'succeeded'",
    "failed": "status = 'failed'",
    "cancelled": "status = 'cancelled'",
    "cache_hits": "cached",
    "llm_calls": f"CASE WHEN cached THEN 0 ELSE max(attempts - (code IS '{NOT_A_CALL}'), 0) END",
    "fallbacks": "answered AND fallback",
    "input_tokens": "CASE WHEN answered THEN input_tokens ELSE 0 END",
    "output_tokens": "CASE WHEN answered THEN output_tokens ELSE 0 END",
    "failed_by_code": "CASE WHEN code IS NULL THEN '{}' ELSE json_object(code, 1) END",
    **{column: f"answered AND bucket = {k}" for k, column in enumerate(LATENCY_COLUMNS)},
}
_CODE_PATH = f"'$.\"' || {_CODE} || '\"'"
_SUMMED = [*COUNTER_FIELDS, *LATENCY_COLUMNS]
_UPSERT = f"""INSERT INTO usage_counters ({", ".join((*KEY_COLUMNS, *_ADDED))})
    SELECT {", ".join((*KEY_COLUMNS, *_ADDED.values()))}
    FROM ({_JOB}) WHERE true
    ON CONFLICT ({", ".join(KEY_COLUMNS)}) DO UPDATE SET
    {", ".join(f"{name} = {name} + excluded.{name}" for name in _SUMMED)},
    failed_by_code = CASE WHEN excluded.failed = 0 THEN failed_by_code ELSE json_set(
        failed_by_code, {_CODE_PATH},
        coalesce(json_extract(failed_by_code, {_CODE_PATH}), 0) + 1) END;"""

USAGE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage_counters (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    {" ".join(f"{name} INTEGER NOT NULL DEFAULT 0," for name in _SUMMED)}
    failed_by_code TEXT NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (tenant, day, model, provider)
) WITHOUT ROWID;

-- A job's end moves its tenant's usage counters inside the same statement, whoever writes it.
CREATE TRIGGER IF NOT EXISTS jobs_usage_on_end AFTER UPDATE OF status ON jobs
WHEN OLD.status IN ('queued', 'running') AND NEW.status IN {ENDED}
BEGIN
    {_UPSERT}
END;

-- A job stored already ended (a cache hit) counts in the INSERT that stores it.
CREATE TRIGGER IF NOT EXISTS jobs_usage_on_insert AFTER INSERT ON jobs
WHEN NEW.status IN {ENDED}
BEGIN
    {_UPSERT}
END;
"""

_READ_COLUMNS = ("day", "model", "provider", *_SUMMED, "failed_by_code")
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
