"""Query parameters for DynamoDbJobStore: job listings with their opaque cursor, and reads of
one partition of an index (sweeps).

A listing cursor is base64url JSON `["j1", created_at, job id]`: where the previous page ended. It
becomes the Query's ExclusiveStartKey on either listing index (tenant_jobs, batch_jobs), whose
sort keys are both `<created_at ISO>#<id>`; DynamoDB resumes after that key whether or not the
job still exists or has changed status.
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
    TENANT_JOBS,
    Item,
    iso,
    job_key,
    s,
)
from shared.errors import InvalidCursor
from shared.models import Job, JobStatus

CURSOR_TAG = "j1"
FILTERED_PAGE = 100  # items read per page when a status filter may drop most of them


def encode_cursor(job: Job) -> str:
    raw = json.dumps([CURSOR_TAG, iso(job.created_at), job.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """(created_at ISO, job id) from a cursor this module made; InvalidCursor otherwise."""
    try:
        tag, created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        valid = (
            tag == CURSOR_TAG
            and isinstance(job_id, str)
            and bool(job_id)
            and iso(datetime.fromisoformat(created_at)) == created_at
        )
    except (binascii.Error, ValueError, TypeError, RecursionError):
        valid = False
    if not valid:
        raise InvalidCursor("this cursor was not made by this listing")
    return created_at, job_id


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
