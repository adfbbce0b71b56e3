# Two queues so single submits never wait behind a big batch: each has its own event source
# mapping with its own concurrency cap (lambda.tf). Failed records go back to their queue
# (ReportBatchItemFailures) and, after max_receive_count receives, to the queue's DLQ.

resource "aws_sqs_queue" "jobs_dlq" {
  name                      = "${var.jobs_queue_name}${local.dlq_suffix}"
  message_retention_seconds = 1209600 # 14 days, the maximum: time to inspect and redrive
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "jobs" {
  name                       = var.jobs_queue_name
  visibility_timeout_seconds = local.queue_visibility_timeout_s
  message_retention_seconds  = 345600 # 4 days; the DLQ keeps longer (a moved message keeps its age)
  receive_wait_time_seconds  = 20     # long polling for `python -m worker` with QUEUE_BACKEND=sqs
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.jobs_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "jobs_dlq" {
  queue_url = aws_sqs_queue.jobs_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

resource "aws_sqs_queue" "batch_dlq" {
  name                      = "${var.batch_queue_name}${local.dlq_suffix}"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "batch" {
  name                       = var.batch_queue_name
  visibility_timeout_seconds = local.queue_visibility_timeout_s
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.batch_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "batch_dlq" {
  queue_url = aws_sqs_queue.batch_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.batch.arn]
  })
}
