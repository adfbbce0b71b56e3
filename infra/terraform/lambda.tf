# One image, three functions; each picks its handler with image_config.command
# (names.API_HANDLER, names.WORKER_HANDLER, names.SCHEDULED_HANDLER).
#
# The checkov skips repeat on each function on purpose (checkov reads them per resource).

resource "aws_lambda_function" "api" {
  #checkov:skip=CKV_AWS_117:No VPC by design (DynamoDB cache, no NAT); joins the VPC with enable_elasticache.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (they are in Secrets Manager); encrypted at rest by the Lambda service key.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages only; this is a container image from an immutable, scanned ECR tag.
  #checkov:skip=CKV_AWS_115:Reserved concurrency is the optional api_reserved_concurrency (null: accounts at the 10-concurrency quota cannot reserve); the API is capped by stage throttling.
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway only; a Lambda DLQ applies to asynchronous invocations.
  function_name = local.functions.api
  description   = "chatjobs HTTP API (FastAPI via Mangum) behind API Gateway"
  role          = aws_iam_role.api.arn
  package_type  = "Image"
  image_uri     = local.image_uri
  architectures = [var.lambda_architecture]
  memory_size   = var.api_memory_mb
  timeout       = var.api_timeout_s

  reserved_concurrent_executions = var.api_reserved_concurrency

  image_config {
    command = ["api.lambda_handler.handler"]
  }

  environment {
    variables = local.api_env
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  dynamic "vpc_config" {
    for_each = var.enable_elasticache ? [1] : []
    content {
      subnet_ids         = var.private_subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  depends_on = [aws_cloudwatch_log_group.function["api"], aws_iam_role_policy.api]
}

resource "aws_lambda_function" "worker" {
  #checkov:skip=CKV_AWS_117:No VPC by design (DynamoDB cache, no NAT); joins the VPC with enable_elasticache.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (they are in Secrets Manager); encrypted at rest by the Lambda service key.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages only; this is a container image from an immutable, scanned ECR tag.
  #checkov:skip=CKV_AWS_115:Capped per queue by scaling_config.maximum_concurrency (jobs and batch separately); worker_reserved_concurrency is optional.
  #checkov:skip=CKV_AWS_116:Driven by SQS event source mappings; failed records are redriven to each queue's own DLQ (redrive_policy), which a function DLQ would not see.
  function_name = local.functions.worker
  description   = "chatjobs worker: runs jobs from the jobs and batch SQS queues"
  role          = aws_iam_role.worker.arn
  package_type  = "Image"
  image_uri     = local.image_uri
  architectures = [var.lambda_architecture]
  memory_size   = var.worker_memory_mb
  timeout       = var.worker_timeout_s

  reserved_concurrent_executions = var.worker_reserved_concurrency

  image_config {
    command = ["worker.lambda_handler.handler"]
  }

  environment {
    variables = local.worker_env
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  dynamic "vpc_config" {
    for_each = var.enable_elasticache ? [1] : []
    content {
      subnet_ids         = var.private_subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  lifecycle {
    precondition {
      # Settings.job_timeout_s = 2 x LLM_TIMEOUT_S + 5 (primary, then fallback).
      condition     = var.worker_timeout_s >= 2 * var.llm_timeout_s + 5
      error_message = "worker_timeout_s must be at least 2 * llm_timeout_s + 5 (one job, primary then fallback)."
    }
  }

  depends_on = [aws_cloudwatch_log_group.function["worker"], aws_iam_role_policy.worker]
}

resource "aws_lambda_function" "scheduler" {
  #checkov:skip=CKV_AWS_117:No VPC by design (DynamoDB cache, no NAT); joins the VPC with enable_elasticache.
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (they are in Secrets Manager); encrypted at rest by the Lambda service key.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages only; this is a container image from an immutable, scanned ECR tag.
  #checkov:skip=CKV_AWS_115:Runs once a minute from EventBridge; scheduler_reserved_concurrency is optional (1 forbids overlapping sweeps).
  #checkov:skip=CKV_AWS_116:A failed sweep is not retried (aws_lambda_function_event_invoke_config.scheduler): the next run one minute later does the same idempotent work, so there is nothing to dead-letter.
  function_name = local.functions.scheduler
  description   = "chatjobs scheduled sweeps: lost jobs, due webhook retries"
  role          = aws_iam_role.scheduler.arn
  package_type  = "Image"
  image_uri     = local.image_uri
  architectures = [var.lambda_architecture]
  memory_size   = var.scheduler_memory_mb
  timeout       = var.scheduler_timeout_s

  reserved_concurrent_executions = var.scheduler_reserved_concurrency

  image_config {
    command = ["worker.lambda_handler.scheduled"]
  }

  environment {
    variables = local.scheduler_env
  }

  tracing_config {
    mode = var.lambda_tracing_mode
  }

  dynamic "vpc_config" {
    for_each = var.enable_elasticache ? [1] : []
    content {
      subnet_ids         = var.private_subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  depends_on = [aws_cloudwatch_log_group.function["scheduler"], aws_iam_role_policy.scheduler]
}

# --- worker: one event source mapping per queue --------------------------------------------------

resource "aws_lambda_event_source_mapping" "jobs" {
  event_source_arn                   = aws_sqs_queue.jobs.arn
  function_name                      = aws_lambda_function.worker.arn
  batch_size                         = var.jobs_batch_size
  maximum_batching_window_in_seconds = var.jobs_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.jobs_max_concurrency
  }
}

resource "aws_lambda_event_source_mapping" "batch" {
  event_source_arn                   = aws_sqs_queue.batch.arn
  function_name                      = aws_lambda_function.worker.arn
  batch_size                         = var.batch_batch_size
  maximum_batching_window_in_seconds = var.batch_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.batch_max_concurrency
  }
}

# --- scheduler: every minute from EventBridge ----------------------------------------------------

resource "aws_cloudwatch_event_rule" "scheduler" {
  name                = "${var.name}-every-minute"
  description         = "chatjobs sweeps and webhook retries"
  schedule_expression = "rate(1 minute)"
}

resource "aws_cloudwatch_event_target" "scheduler" {
  rule = aws_cloudwatch_event_rule.scheduler.name
  arn  = aws_lambda_function.scheduler.arn

  retry_policy {
    maximum_event_age_in_seconds = 60 # a later tick supersedes a stale one
    maximum_retry_attempts       = 0
  }
}

resource "aws_lambda_permission" "scheduler_events" {
  statement_id  = "AllowEventBridgeInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.scheduler.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.scheduler.arn
}

resource "aws_lambda_function_event_invoke_config" "scheduler" {
  function_name                = aws_lambda_function.scheduler.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}
