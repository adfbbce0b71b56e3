# Single-table design (shared/adapters/aws/names.py): jobs, batches, idempotency keys, cached
# results, rate-limit windows and usage counters, told apart by the prefix of pk. Every item but a
# usage counter, a queued or running job and an open batch carries expires_at: DynamoDB deletes it
# (free of charge, within days) after that time, and reads ignore it from then on.
resource "aws_dynamodb_table" "main" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS-managed aws/dynamodb KMS key (server_side_encryption below). A customer-managed key adds $1/month plus per-request KMS charges and a key policy, without narrowing who reads the data: that is the per-function IAM grant on this table.
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  attribute {
    name = "gsi_tenant"
    type = "S"
  }

  attribute {
    name = "gsi_tenant_sk"
    type = "S"
  }

  attribute {
    name = "batch_id"
    type = "S"
  }

  attribute {
    name = "gsi_batch_tenant"
    type = "S"
  }

  attribute {
    name = "gsi_batch_tenant_sk"
    type = "S"
  }

  attribute {
    name = "gsi_unfinished"
    type = "S"
  }

  attribute {
    name = "gsi_unfinished_sk"
    type = "S"
  }

  attribute {
    name = "gsi_webhook"
    type = "S"
  }

  attribute {
    name = "gsi_webhook_sk"
    type = "S"
  }

  # Projections (names.INDEX_PROJECTIONS; setup.py creates the same): keys plus the few attributes
  # the queries filter on. A job's claim, answer and webhook progress change only its `data`, so
  # they are not written again to every index at the item's full size; readers fetch the records
  # they list from the table by key (BatchGetItem).

  # A tenant's jobs, newest first.
  global_secondary_index {
    name               = "tenant_jobs"
    hash_key           = "gsi_tenant"
    range_key          = "gsi_tenant_sk"
    projection_type    = "INCLUDE"
    non_key_attributes = ["status", "expires_at"]
  }

  # A batch's jobs in submission order. Keyed on the job's own `batch_id` and the tenant index's
  # sort key (the same created_at#id): no copies of them, which every write of a job would pay for.
  global_secondary_index {
    name               = "batch_jobs"
    hash_key           = "batch_id"
    range_key          = "gsi_tenant_sk"
    projection_type    = "INCLUDE"
    non_key_attributes = ["status", "expires_at"]
  }

  # A tenant's batches, newest first (GET /v1/batches). A batch stored before this index existed
  # is listed once it is written again (an open one when it completes); by id it reads as before.
  global_secondary_index {
    name               = "tenant_batches"
    hash_key           = "gsi_batch_tenant"
    range_key          = "gsi_batch_tenant_sk"
    projection_type    = "INCLUDE"
    non_key_attributes = ["expires_at"]
  }

  attribute {
    name = "gsi_day"
    type = "S"
  }

  # Sparse: only queued/running jobs carry gsi_unfinished, so the sweep reads them without a scan.
  global_secondary_index {
    name               = "unfinished"
    hash_key           = "gsi_unfinished"
    range_key          = "gsi_unfinished_sk"
    projection_type    = "INCLUDE"
    non_key_attributes = ["status", "batch_id", "updated_at", "gsi_tenant", "priority"]
  }

  # Sparse: webhook deliveries that are due, and (partition FAILED) those that gave up.
  global_secondary_index {
    name            = "due_webhooks"
    hash_key        = "gsi_webhook"
    range_key       = "gsi_webhook_sk"
    projection_type = "KEYS_ONLY"
  }

  # Every tenant's jobs (J#<day>) and batches (B#<day>) by UTC day of creation, newest first:
  # the operator console's listings (/v1/admin/jobs, /v1/admin/batches) without a scan. Sorted
  # on the jobs' own gsi_tenant_sk (batches carry it too); keys only, so a job's status changes
  # never rewrite its entry: the listings check status and expiry on the records they read.
  global_secondary_index {
    name            = "by_day"
    hash_key        = "gsi_day"
    range_key       = "gsi_tenant_sk"
    projection_type = "KEYS_ONLY"
  }

  # Cache entries (CACHE_TTL_S), idempotency keys (24 h), rate windows, and ended jobs and batches
  # (JOB_RETENTION_DAYS after they ended).
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true # the AWS-managed aws/dynamodb KMS key
  }
}
