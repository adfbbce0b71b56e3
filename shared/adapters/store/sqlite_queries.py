"""SQL text and parameters for SqliteJobStore: inserts, JSON-patching updates, keyset pages."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from shared.adapters.store.sqlite_schema import COUNT_COLUMNS, ts
from shared.errors import InvalidCursor
from shared.models import JobStatus

BATCH_SELECT = f"SELECT data, {', '.join(COUNT_COLUMNS)} FROM batches"
RETURNING_BATCH = f"RETURNING data, {', '.join(COUNT_COLUMNS)}"
ONLY_IN_COLUMNS = frozenset({"counts"})  # a batch's counts are kept current by the trigger
ATTEMPTS_PLUS_ONE = "json_set(data, '$.attempts', json_extract(data, '$.attempts') + 1)"
CLAIMABLE = (
    "((status = 'queued'"
    " AND coalesce(julianday(json_extract(data, '$.not_before')), 0) <= julianday(?))"
    " OR (status = 'running' AND (lease_until IS NULL OR lease_until < ?)))"
)
UNFINISHED = (
    "SELECT id, batch_id, json_extract(data, '$.updated_at'), tenant,"
    " json_extract(data, '$.priority') FROM jobs"
    " WHERE status IN ('queued', 'running') ORDER BY created_at"
)
IN_STATUS = (  # answered from the jobs_status index
    "SELECT id, batch_id, json_extract(data, '$.updated_at'), tenant,"
    " json_extract(data, '$.priority') FROM jobs WHERE status = ? ORDER BY created_at"
)
COUNT_UNFINISHED = (  # answered from the jobs_status index
    "SELECT status, count(*) FROM jobs WHERE status IN ('queued', 'running') GROUP BY status"
)
CLOSABLE_BATCHES = (
    "SELECT id FROM batches WHERE status IN ('in_progress', 'cancelling')"
    " AND succeeded + failed + cancelled >= total"
)
DUE_WEBHOOKS = """
    SELECT 'jobs', id, webhook_next_at FROM jobs
        WHERE webhook_state = 'pending' AND webhook_next_at <= ?
    UNION ALL
    SELECT 'batches', id, webhook_next_at FROM batches
        WHERE webhook_state = 'pending' AND webhook_next_at <= ?
    ORDER BY webhook_next_at LIMIT ?
"""
LEASE_WEBHOOK = (
    "UPDATE {table} SET webhook_next_at = ?, "
    "data = json_set(data, '$.webhook.next_attempt_at', json(?)) WHERE id = ?"
)


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join((*columns, "data"))
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"


@cache
def _adapter(model: type[BaseModel], field: str) -> TypeAdapter[Any]:
    info = model.model_fields.get(field)
    if info is None or info.annotation is None:
        raise ValueError(f"{model.__name__} has no field {field!r}")
    return TypeAdapter(info.annotation)


def field_json(model: type[BaseModel], field: str, value: Any) -> str:
    """`value`, validated as `model.field`, in the JSON form pydantic gives it inside `data`."""
    adapter = _adapter(model, field)
    return adapter.dump_json(adapter.validate_python(value)).decode()


def update_sql(
    model: type[BaseModel],
    values: Mapping[str, Any],
    columns_of: Callable[[Mapping[str, Any]], dict[str, Any]],
    base: str = "data",
) -> tuple[str, list[Any]]:
    """`SET` assignments that write `values` into the JSON `data` and the columns that copy them.

    Values are validated as the model's fields first, so a bad change fails before any write.
    """
    fields = {k: _adapter(model, k).validate_python(v) for k, v in values.items()}
    columns = columns_of(fields)
    in_json = {k: v for k, v in fields.items() if k not in ONLY_IN_COLUMNS}
    paths = "".join(f", '$.{k}', json(?)" for k in in_json)
    params = [_adapter(model, k).dump_json(v).decode() for k, v in in_json.items()]
    assignments = [f"{c} = ?" for c in columns] + [f"data = json_set({base}{paths})"]
    return ", ".join(assignments), [*columns.values(), *params]


def scoped(select: str, subject_id: str, tenant: str | None) -> tuple[str, list[str]]:
    if tenant is None:
        return f"{select} WHERE id = ?", [subject_id]
    return f"{select} WHERE id = ? AND tenant = ?", [subject_id, tenant]


def list_query(
    tenant: str,
    status: JobStatus | None,
    batch_id: str | None,
    cursor: str | None,
    oldest_first: bool,
) -> tuple[str, list[Any]]:
    """Keyset pagination on (created_at, id), newest or oldest first."""
    where, params = ["tenant = ?"], [tenant]
    if status is not None:
        where.append("status = ?")
        params.append(JobStatus(status).value)
    if batch_id is not None:
        where.append("batch_id = ?")
        params.append(batch_id)
    if cursor is not None:
        where.append(f"(created_at, id) {'>' if oldest_first else '<'} (?, ?)")
        params.extend(decode_cursor(cursor))
    order = "ASC" if oldest_first else "DESC"
    sql = f"SELECT data FROM jobs WHERE {' AND '.join(where)}"
    return f"{sql} ORDER BY created_at {order}, id {order} LIMIT ?", params


def batch_list_query(tenant: str, cursor: str | None) -> tuple[str, list[Any]]:
    """A tenant's batches newest first, keyset-paged on (created_at, id) by its index."""
    where, params = ["tenant = ?"], [tenant]
    if cursor is not None:
        where.append("(created_at, id) < (?, ?)")
        params.extend(decode_cursor(cursor))
    sql = f"{BATCH_SELECT} WHERE {' AND '.join(where)}"
    return f"{sql} ORDER BY created_at DESC, id DESC LIMIT ?", params


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([ts(created_at), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (created_at column text, id) a page ended at; InvalidCursor when it is not ours."""
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        datetime.fromisoformat(created_at)
    except (binascii.Error, UnicodeError, TypeError, ValueError):
        raise InvalidCursor("invalid cursor") from None
    if not isinstance(job_id, str):
        raise InvalidCursor("invalid cursor")
    return created_at, job_id
