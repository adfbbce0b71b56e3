"""Query parameters for DynamoDbJobStore: job and batch listings with their opaque cursor, and
reads of one partition of an index (sweeps).

A listing cursor is base64url JSON `[tag, created_at, id]`: where the previous page ended (tag
"j1" for jobs, "b1" for batches). It becomes the Query's ExclusiveStartKey on the listing index
(tenant_jobs, batch_jobs, tenant_batches), whose sort keys are all `<created_at ISO>#<id>`;
DynamoDB resumes after that key whether or not the record still exists or has changed status.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from shared.adapters.aws import names
from shared.adapters.store.dynamodb_calls import expression
from shared.adapters.store.dynamodb_items import (
    BATCH_JOBS,
    TENANT_BATCHES,
    TENANT_JOBS,
    Item,
    batch_key,
    iso,
    job_key,
    s,
)
from shared.errors import InvalidCursor
from shared.models import Batch, Job, JobStatus

CURSOR_TAG, BATCH_CURSOR_TAG = "j1", "b1"
FILTERED_PAGE = 100  # items read per page when a status filter may drop most of them


def encode_cursor(record: Job | Batch, tag: str = CURSOR_TAG) -> str:
    raw = json.dumps([tag, iso(record.created_at), record.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def index_cursor(item: Item, index: str, tag: str = CURSOR_TAG) -> str:
    """encode_cursor's cursor for the record an entry of a listing index names, read from the
    entry's sort key (`<created_at ISO>#<id>`), which every projection holds."""
    created_at, _, subject_id = item[names.INDEXES[index][1]]["S"].partition("#")
    raw = json.dumps([tag, created_at, subject_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, expected_tag: str = CURSOR_TAG) -> tuple[str, str]:
    """(created_at ISO, id) from a cursor this module made for this listing; InvalidCursor
    otherwise."""
    try:
        tag, created_at, subject_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        valid = (
            tag == expected_tag
            and isinstance(subject_id, str)
            and bool(subject_id)
            and iso(datetime.fromisoformat(created_at)) == created_at
        )
    except (binascii.Error, ValueError, TypeError, RecursionError):
        valid = False
    if not valid:
        raise InvalidCursor("this cursor was not made by this listing")
    return created_at, subject_id


def list_query(
    table: str,
    partition: str,
    *,
    by_batch: bool,
    status: JobStatus | None,
    cursor: str | None,
    oldest_first: bool,
    limit: int,
) -> dict[str, Any]:
    """Query parameters for a tenant's (or, `by_batch`, a batch's) jobs in created_at order."""
    index = BATCH_JOBS if by_batch else TENANT_JOBS
    hash_attr, range_attr = names.INDEXES[index]
    values: Item = {":partition": s(partition)}
    parts = {"KeyConditionExpression": f"#{hash_attr} = :partition"}
    if status is not None:
        values[":status"] = s(JobStatus(status).value)
        parts["FilterExpression"] = "#status = :status"
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "ScanIndexForward": oldest_first,
        "Limit": limit + 1 if status is None else max(limit + 1, FILTERED_PAGE),
        **expression(values, **parts),
    }
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor)
        params["ExclusiveStartKey"] = {
            **job_key(job_id),
            hash_attr: s(partition),
            range_attr: s(f"{created_at}#{job_id}"),
        }
    return params


def batch_list_query(table: str, tenant: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """Query parameters for a tenant's batches, newest first (one more than `limit`)."""
    hash_attr, range_attr = names.INDEXES[TENANT_BATCHES]
    params: dict[str, Any] = {
        "TableName": table,
        "IndexName": TENANT_BATCHES,
        "ScanIndexForward": False,
        "Limit": limit + 1,
        **expression({":tenant": s(tenant)}, KeyConditionExpression=f"#{hash_attr} = :tenant"),
    }
    if cursor is not None:
        created_at, batch_id = decode_cursor(cursor, BATCH_CURSOR_TAG)
        params["ExclusiveStartKey"] = {
            **batch_key(batch_id),
            hash_attr: s(tenant),
            range_attr: s(f"{created_at}#{batch_id}"),
        }
    return params


def index_query(
    table: str,
    index: str,
    partition: str,
    *,
    below: str | None = None,
    status: JobStatus | None = None,
    page: int | None = None,
) -> dict[str, Any]:
    """One partition of an index in sort-key order: `below` bounds the sort key (exclusive),
    `status` filters, `page` caps the items read per call."""
    hash_attr, range_attr = names.INDEXES[index]
    values: Item = {":partition": s(partition)}
    key = f"#{hash_attr} = :partition"
    if below is not None:
        key += f" AND #{range_attr} < :below"
        values[":below"] = s(below)
    parts = {"KeyConditionExpression": key}
    if status is not None:
        parts["FilterExpression"] = "#status = :status"
        values[":status"] = s(status.value)
    params = {"TableName": table, "IndexName": index, **expression(values, **parts)}
    return params | ({"Limit": page} if page else {})
