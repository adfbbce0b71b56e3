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
  log_group_class   = var.api_access_log_class
}

# --- alarms ----------------------------------------------------------------------------------------

locals {
  queues = {
    jobs  = { name = aws_sqs_queue.jobs.name, dlq = aws_sqs_queue.jobs_dlq.name, max_age_s = var.jobs_queue_max_age_s }
    batch = { name = aws_sqs_queue.batch.name, dlq = aws_sqs_queue.batch_dlq.name, max_age_s = var.batch_queue_max_age_s }
    high  = { name = aws_sqs_queue.high.name, dlq = aws_sqs_queue.high_dlq.name, max_age_s = var.high_queue_max_age_s }
    low   = { name = aws_sqs_queue.low.name, dlq = aws_sqs_queue.low_dlq.name, max_age_s = var.low_queue_max_age_s }
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

# --- job outcomes, counted from the functions' JSON log lines ----------------------------------

locals {
  job_metrics_namespace = "${var.name}/jobs"
  # Each filter matches one log call in the code: its logger, level and the start of its message.
  job_log_metrics = {
    # shared/execution.py, JobExecutor._fail: `job <id> failed: <why>`
    FailedJobs = "{ $.logger = \"shared.execution\" && $.level = \"WARNING\" && $.message = \"job *\" }"
    # shared/adapters/llm/fallback.py, FallbackLLM.complete: `<primary> failed (<why>); falling back to <fallback>`
    Fallbacks = "{ $.logger = \"shared.adapters.llm.fallback\" && $.level = \"WARNING\" }"
  }
  job_log_filters = {
    for pair in setproduct(keys(local.functions), keys(local.job_log_metrics)) :
    "${pair[0]}-${pair[1]}" => { function = pair[0], metric = pair[1] }
  }
}

resource "aws_cloudwatch_log_metric_filter" "job_outcomes" {
  for_each = local.job_log_filters

  name           = "${local.functions[each.value.function]}-${each.value.metric}"
  log_group_name = aws_cloudwatch_log_group.function[each.value.function].name
  pattern        = local.job_log_metrics[each.value.metric]

  metric_transformation {
    name      = each.value.metric
    namespace = local.job_metrics_namespace
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "failed_jobs" {
  alarm_name          = "${var.name}-failed-jobs"
  alarm_description   = "More than ${var.failed_jobs_alarm_threshold} jobs ended failed in 5 minutes. The worker log's `job <id> failed: <why>` lines say why (a provider refusing prompts, every provider down, attempts exhausted)."
  namespace           = local.job_metrics_namespace
  metric_name         = "FailedJobs"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.failed_jobs_alarm_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  depends_on          = [aws_cloudwatch_log_metric_filter.job_outcomes]
}

# Fallbacks per job message processed (deleted from any queue), over 15 minutes.
resource "aws_cloudwatch_metric_alarm" "fallback_rate" {
  alarm_name          = "${var.name}-fallback-rate"
  alarm_description   = "More than ${var.fallback_rate_alarm_percent}% of the jobs processed in 15 minutes fell back from Gemini to OpenRouter: Gemini failing, rate-limited or its circuit open (the worker log's `falling back to` lines say why)."
  evaluation_periods  = 1
  threshold           = var.fallback_rate_alarm_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  depends_on          = [aws_cloudwatch_log_metric_filter.job_outcomes]

  metric_query {
    id          = "rate"
    expression  = "IF(jobs + batch + high + low > 0, 100 * fallbacks / (jobs + batch + high + low), 0)"
    label       = "fallbacks per job processed (%)"
    return_data = true
  }

  metric_query {
    id = "fallbacks"
    metric {
      namespace   = local.job_metrics_namespace
      metric_name = "Fallbacks"
      period      = 900
      stat        = "Sum"
    }
  }

  metric_query {
    id = "jobs"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "NumberOfMessagesDeleted"
      dimensions  = { QueueName = aws_sqs_queue.jobs.name }
      period      = 900
      stat        = "Sum"
    }
  }

  metric_query {
    id = "batch"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "NumberOfMessagesDeleted"
      dimensions  = { QueueName = aws_sqs_queue.batch.name }
      period      = 900
      stat        = "Sum"
    }
  }

  metric_query {
    id = "high"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "NumberOfMessagesDeleted"
      dimensions  = { QueueName = aws_sqs_queue.high.name }
      period      = 900
      stat        = "Sum"
    }
  }

  metric_query {
    id = "low"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "NumberOfMessagesDeleted"
      dimensions  = { QueueName = aws_sqs_queue.low.name }
      period      = 900
      stat        = "Sum"
    }
  }
}

# --- where alarms go ---------------------------------------------------------------------------

# Only when no topic is given and an address is: the stack's own topic, mailed to alarm_email.
# Its default access policy lets CloudWatch alarms of this account publish to it.
resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26:CloudWatch cannot publish to a topic encrypted with the AWS-managed aws/sns key, and a customer-managed key ($1/month plus a key policy) would protect alarm names and states only: no job data or secret is ever sent here.
  count = var.alarm_sns_topic_arn == null && var.alarm_email != null ? 1 : 0

  name = "${var.name}-alarms"
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = length(aws_sns_topic.alarms)

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
