# Priorities (docs/adr/0015): a queue for `high` and one for `low` jobs, singles and batch jobs
# alike; `normal` ones keep the jobs and batch queues (sqs.tf). Each queue has its own event source
# mapping, and the priority is the weight of its maximum_concurrency: high above jobs, jobs above
# batch, batch at or above low. Lambda polls every mapping at once, so this weights the queues;
# it is not a strict order (the SQS poller's is, see worker/sqs_poller.py). Every message carries
# its tenant as MessageGroupId, which makes each queue an SQS fair queue across tenants.

resource "aws_sqs_queue" "high_dlq" {
  name                      = "${var.high_queue_name}${local.dlq_suffix}"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "high" {
  name                       = var.high_queue_name
  visibility_timeout_seconds = local.queue_visibility_timeout_s
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.high_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "high_dlq" {
  queue_url = aws_sqs_queue.high_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.high.arn]
  })
}

resource "aws_sqs_queue" "low_dlq" {
  name                      = "${var.low_queue_name}${local.dlq_suffix}"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "low" {
  name                       = var.low_queue_name
  visibility_timeout_seconds = local.queue_visibility_timeout_s
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.low_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "low_dlq" {
  queue_url = aws_sqs_queue.low_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.low.arn]
  })
}

resource "aws_lambda_event_source_mapping" "high" {
  event_source_arn                   = aws_sqs_queue.high.arn
  function_name                      = aws_lambda_function.worker.arn
  batch_size                         = var.jobs_batch_size
  maximum_batching_window_in_seconds = var.jobs_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.high_max_concurrency
  }
}

resource "aws_lambda_event_source_mapping" "low" {
  event_source_arn                   = aws_sqs_queue.low.arn
  function_name                      = aws_lambda_function.worker.arn
  batch_size                         = var.batch_batch_size
  maximum_batching_window_in_seconds = var.batch_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.low_max_concurrency
  }
}
