"""SQL of SqliteJobStore's cross-tenant reads (the `AdminStore` port): the operator's job and
batch listings, failing webhooks and the backlog. Each statement reads through an index
(`EXPLAIN QUERY PLAN` shows no `SCAN` of a table: tests/contract/test_admin_store_contract.py)."""

from __future__ import annotations

from typing import Any

from shared.adapters.store.sqlite_queries import BATCH_SELECT, decode_cursor
from shared.adapters.store.sqlite_schema import ts
from shared.admin_queries import BatchQuery, JobQuery

COUNT_STATUS = "SELECT count(*) FROM jobs WHERE status = ?"
OLDEST_QUEUED = "SELECT min(created_at) FROM jobs WHERE status = 'queued'"
QUEUED_IN_BATCHES = (
    "SELECT coalesce(sum(queued), 0) FROM batches WHERE status IN ('in_progress', 'cancelling')"
)
# failed for good, or pending again after a failed attempt; both through jobs_webhook_due
FAILING_JOB_WEBHOOKS = """
    SELECT data FROM jobs WHERE webhook_state = 'failed'
    UNION ALL
    SELECT data FROM jobs WHERE webhook_state = 'pending'
        AND json_extract(data, '$.webhook.attempts') > 0
    LIMIT ?
"""
FAILING_BATCH_WEBHOOKS = f"""
    {BATCH_SELECT} WHERE webhook_state = 'failed'
    UNION ALL
    {BATCH_SELECT} WHERE webhook_state = 'pending'
        AND json_extract(data, '$.webhook.attempts') > 0
    LIMIT ?
"""


def _window(
    where: list[str], params: list[Any], query: JobQuery | None, cursor: str | None
) -> None:
    if query is not None and query.created_from is not None:
        where.append("created_at >= ?")
        params.append(ts(query.created_from))
    if query is not None and query.created_to is not None:
        where.append("created_at < ?")
        params.append(ts(query.created_to))
    if cursor is not None:
        where.append("(created_at, id) < (?, ?)")
        params.extend(decode_cursor(cursor))


def _ordered(select: str, where: list[str]) -> str:
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return f"{select}{condition} ORDER BY created_at DESC, id DESC LIMIT ?"


def job_search(query: JobQuery, cursor: str | None) -> tuple[str, list[Any]]:
    """Every tenant's jobs newest first, keyset-paged on (created_at, id); the filters given pick
    the index (tenant, batch, status or none: jobs_created)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("tenant", query.tenant),
        ("batch_id", query.batch_id),
        ("status", query.status.value if query.status else None),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    _window(where, params, query, cursor)
    return _ordered("SELECT data FROM jobs", where), params


def batch_search(query: BatchQuery, cursor: str | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.tenant is not None:
        where.append("tenant = ?")
        params.append(query.tenant)
    if query.status is not None:
        where.append("status = ?")
        params.append(query.status.value)
    _window(where, params, None, cursor)
    return _ordered(BATCH_SELECT, where), params
