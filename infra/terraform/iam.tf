# One role per function, each granted only what its code path needs.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

locals {
  table_arns = [aws_dynamodb_table.main.arn, "${aws_dynamodb_table.main.arn}/index/*"]
  queue_arns = [aws_sqs_queue.jobs.arn, aws_sqs_queue.batch.arn, aws_sqs_queue.high.arn, aws_sqs_queue.low.arn]
  dlq_arns   = [aws_sqs_queue.jobs_dlq.arn, aws_sqs_queue.batch_dlq.arn, aws_sqs_queue.high_dlq.arn, aws_sqs_queue.low_dlq.arn]

  # Item reads and writes of the single table. TransactWriteItems needs the action of each item
  # it holds (Put/Update/Delete/ConditionCheck); BatchWriteItem stores big batches' jobs;
  # DeleteItem releases what a refused submit had reserved. No Scan: sweeps query sparse indexes.
  dynamodb_actions = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:TransactWriteItems",
  ]
}

# Statements every function needs: the table, the secret, its own log group, X-Ray.
data "aws_iam_policy_document" "common" {
  for_each = local.functions

  statement {
    sid       = "Table"
    actions   = local.dynamodb_actions
    resources = local.table_arns
  }

  statement {
    sid       = "ReadAppSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.app.arn]
  }

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  # AWS requires "*" here: X-Ray's PutTraceSegments and PutTelemetryRecords support no
  # resource-level permissions (the service authorization reference lists no resource type).
  statement {
    sid       = "XRayWrite"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

# --- API: enqueue (single and batch), read queue depth for /readyz, the files bucket, and the ------
# --- console's dead letters (their depth, and a redrive that moves them back) ----------------------

data "aws_iam_policy_document" "api" {
  source_policy_documents = [data.aws_iam_policy_document.common["api"].json]

  statement {
    sid       = "Enqueue"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = local.queue_arns
  }

  # The console's Dead letters page (shared/adapters/queue/sqs_dead_letters.py): each queue's
  # RedrivePolicy names its DLQ (GetQueueAttributes above); a redrive receives from the DLQ,
  # sends back to the queue (SendMessage above) and deletes from the DLQ. Nothing is consumed
  # from the job queues themselves.
  statement {
    sid       = "RedriveDeadLetters"
    actions   = ["sqs:GetQueueAttributes", "sqs:ReceiveMessage", "sqs:DeleteMessage"]
    resources = local.dlq_arns
  }

  # The OpenAI dialect's files. ListBucket also makes a missing key answer 404 (NoSuchKey)
  # rather than 403, which the code reads as "no such file".
  statement {
    sid       = "FileObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.files.arn}/*"]
  }

  statement {
    sid       = "ListFiles"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.files.arn]
  }
}

resource "aws_iam_role" "api" {
  name               = "${var.name}-api"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "api" {
  name   = "${var.name}-api"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

# --- worker: consume both queues (the event source mappings use this role), re-enqueue retries -----

data "aws_iam_policy_document" "worker" {
  source_policy_documents = [data.aws_iam_policy_document.common["worker"].json]

  statement {
    sid = "ConsumeAndRetry"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:SendMessage",
    ]
    resources = local.queue_arns
  }
}

resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "worker" {
  name   = "${var.name}-worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

# --- scheduler: sweeps re-enqueue lost jobs and due webhook retries -------------------------------

data "aws_iam_policy_document" "scheduler" {
  source_policy_documents = [data.aws_iam_policy_document.common["scheduler"].json]

  statement {
    sid       = "Reenqueue"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = local.queue_arns
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "${var.name}-scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

# --- VPC access, only with the optional ElastiCache -----------------------------------------------
# The AWS-managed policy's ENI actions (ec2:CreateNetworkInterface, Describe/DeleteNetworkInterface,
# ...) support no resource-level scoping at creation time; AWS documents this policy for VPC Lambdas.

resource "aws_iam_role_policy_attachment" "vpc_access" {
  for_each = var.enable_elasticache ? {
    api       = aws_iam_role.api.name
    worker    = aws_iam_role.worker.name
    scheduler = aws_iam_role.scheduler.name
  } : {}

  role       = each.value
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}
