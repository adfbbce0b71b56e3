# Logs: one group per function (the name Lambda writes to) and one for API Gateway access logs.
resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every group at rest; a customer-managed KMS key adds $1/month plus per-request charges and a key policy, without narrowing access (IAM on the group does that).
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (default 30): operational logs, kept short as data minimisation and for cost; raise it where a compliance regime requires a year.
  for_each = local.functions

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "api_access" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every group at rest; a customer-managed KMS key adds $1/month plus per-request charges and a key policy, without narrowing access (IAM on the group does that).
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (default 30): access logs hold client IPs, kept short as data minimisation and for cost; raise it where a compliance regime requires a year.
  name              = "/aws/apigateway/${var.name}-http"
  retention_in_days = var.log_retention_days
}

# --- alarms ----------------------------------------------------------------------------------------

locals {
  queues = {
    jobs  = { name = aws_sqs_queue.jobs.name, dlq = aws_sqs_queue.jobs_dlq.name, max_age_s = var.jobs_queue_max_age_s }
    batch = { name = aws_sqs_queue.batch.name, dlq = aws_sqs_queue.batch_dlq.name, max_age_s = var.batch_queue_max_age_s }
  }
}

# Anything in a DLQ is a job that failed max_receive_count deliveries: look at it, then redrive.
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = local.queues

  alarm_name          = "${var.name}-${each.key}-dlq-not-empty"
  alarm_description   = "Messages in ${each.value.dlq}: jobs that failed ${local.max_receive_count} deliveries. Inspect, fix, then start a DLQ redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value.dlq }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The backlog is not being drained: workers failing, throttled, or maximum_concurrency too low.
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  for_each = local.queues

  alarm_name          = "${var.name}-${each.key}-queue-oldest-message"
  alarm_description   = "Oldest message on ${each.value.name} is older than ${each.value.max_age_s} s."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = each.value.max_age_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.functions

  alarm_name          = "${each.value}-errors"
  alarm_description   = "${each.value} invocations failed (unhandled errors, timeouts). Partial SQS batch failures are not counted here."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.lambda_errors_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each = local.functions

  alarm_name          = "${each.value}-throttles"
  alarm_description   = "${each.value} invocations were throttled: account concurrency (or reserved concurrency) exhausted."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
