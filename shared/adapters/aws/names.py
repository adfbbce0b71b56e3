"""Names of the AWS resources: one source for the adapters, `python -m shared.adapters.aws.setup`
(moto, LocalStack) and the test that ties `infra/terraform` to the code.

Single-table design: jobs, batches, idempotency keys, cached results, rate-limit windows and
usage counters all live in one DynamoDB table (DYNAMODB_TABLE), told apart by the prefix of their
partition key.
"""

from __future__ import annotations

from typing import Final

from shared.secrets_source import SECRET_KEYS

__all__ = [
    "SECRET_KEYS"
]  # the secret's keys are defined beside the settings source that reads them

TABLE: Final = "chatjobs"
PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "expires_at"  # epoch seconds; DynamoDB deletes expired items late

# Global secondary indexes: name -> (partition key attribute, sort key attribute). All string keys.
# tenant_jobs: a tenant's jobs newest first. batch_jobs: a batch's jobs in submission order.
# tenant_batches: a tenant's batches newest first.
# unfinished, due_webhooks: sparse (only items that carry the attribute are indexed), so sweeps
# read what they need and never scan.
INDEXES: Final[dict[str, tuple[str, str]]] = {
    "tenant_jobs": ("gsi_tenant", "gsi_tenant_sk"),
    "batch_jobs": ("batch_id", "gsi_tenant_sk"),  # the job's own attributes: no copies to pay for
    "tenant_batches": ("gsi_batch_tenant", "gsi_batch_tenant_sk"),
    "unfinished": ("gsi_unfinished", "gsi_unfinished_sk"),
    "due_webhooks": ("gsi_webhook", "gsi_webhook_sk"),
    # by_day: every tenant's jobs (`J#<day>`) and batches (`B#<day>`) of one UTC day, newest
    # first: the operator console's listings across tenants (dynamodb_admin.py), one partition
    # a day so no listing scans. Its sort key is a job's own gsi_tenant_sk (created_at#id; a
    # batch carries the same text under that name): no second copy for every job write to pay.
    "by_day": ("gsi_day", "gsi_tenant_sk"),
}

# What each index holds besides its own and the table's keys: DynamoDB's INCLUDE projection of
# these attributes, KEYS_ONLY when empty. A write to an item touches an index only when one of its
# keys or a projected attribute changes, so a job's claim, its answer and its webhook's progress
# (all in `data`) cost the indexes little; a reader that needs the record fetches it from the
# table by key (ItemTable.fetch). `status` serves the listings' and the sweeps' filters,
# `expires_at` lets a listing skip ended records past their retention, `batch_id` the sweep;
# `updated_at` (an unfinished job's last change) tells the sweep which jobs have not changed, since
# a claim keeps the entry's sort key (the time the job was queued) and rewrites it in place.
INDEX_PROJECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "tenant_jobs": ("status", "expires_at"),
    "batch_jobs": ("status", "expires_at"),
    "tenant_batches": ("expires_at",),
    # the sweeps' JobRef reads the tenant and priority (the lane of a job put back)
    "unfinished": ("status", "batch_id", "updated_at", "gsi_tenant", "priority"),
    "due_webhooks": (),
    # keys only: a job's status changes and its end (the TTL) never rewrite its by_day entry;
    # the console's listings check status and expiry on the records they read anyway
    "by_day": (),
}

JOBS_QUEUE: Final = "chatjobs-jobs"  # single submits and retries
BATCH_QUEUE: Final = "chatjobs-batch-jobs"  # batch jobs, consumed with their own concurrency cap
HIGH_QUEUE: Final = "chatjobs-high-jobs"  # `high` priority jobs, singles and batch (ADR 0015)
LOW_QUEUE: Final = "chatjobs-low-jobs"  # `low` priority jobs, singles and batch
DLQ_SUFFIX: Final = "-dlq"
MAX_RECEIVE_COUNT: Final = 5
FILES_BUCKET: Final = "chatjobs-files"  # Terraform adds the account id: bucket names are global
SECRET_ID: Final = "chatjobs/app"  # one JSON secret: API_KEYS, GEMINI_API_KEY, ...

# Lambda handlers in the one container image (image_config.command).
API_HANDLER: Final = "api.lambda_handler.handler"
WORKER_HANDLER: Final = "worker.lambda_handler.handler"
SCHEDULED_HANDLER: Final = "worker.lambda_handler.scheduled"
