# One CloudWatch dashboard, "<name>", beside the alarms of cloudwatch.tf: queues and dead letters,
# the functions, the table, the HTTP API, the LLM fallback rate, and the alarms' states. Every
# queue, DLQ and function comes from local.queues and local.functions, the maps the alarms use, so
# a queue or function added there shows here too (tests/infra/test_terraform.py checks that every
# aws_sqs_queue and aws_lambda_function is in them). $3 a month at list price; CloudWatch's
# always-free tier covers three dashboards of up to 50 metrics (this one has about 40).

locals {
  dashboard_region = var.aws_region
  # `period` of every graph: 5 minutes, the alarms' period.
  dashboard_period = 300

  dashboard_queue_graphs = [
    {
      key    = "backlog"
      title  = "Backlog: messages waiting, per queue"
      metric = "ApproximateNumberOfMessagesVisible"
      stat   = "Maximum"
      queues = { for key, queue in local.queues : key => queue.name }
    },
    {
      key    = "oldest"
      title  = "Age of the oldest message, per queue (s)"
      metric = "ApproximateAgeOfOldestMessage"
      stat   = "Maximum"
      queues = { for key, queue in local.queues : key => queue.name }
    },
    {
      key    = "dead_letters"
      title  = "Dead letters: messages in each DLQ"
      metric = "ApproximateNumberOfMessagesVisible"
      stat   = "Maximum"
      queues = { for key, queue in local.queues : "${key} DLQ" => queue.dlq }
    },
    {
      key    = "in_flight"
      title  = "Jobs running: messages received and not yet deleted, per queue"
      metric = "ApproximateNumberOfMessagesNotVisible"
      stat   = "Maximum"
      queues = { for key, queue in local.queues : key => queue.name }
    },
    {
      key    = "processed"
      title  = "Job messages processed (deleted), per queue"
      metric = "NumberOfMessagesDeleted"
      stat   = "Sum"
      queues = { for key, queue in local.queues : key => queue.name }
    },
  ]

  dashboard_function_graphs = [
    { title = "Lambda errors (crashes, timeouts), per function", metric = "Errors", stat = "Sum" },
    { title = "Lambda throttles, per function", metric = "Throttles", stat = "Sum" },
    { title = "Lambda duration p95, per function (ms)", metric = "Duration", stat = "p95" },
    { title = "Lambda invocations, per function", metric = "Invocations", stat = "Sum" },
    { title = "Lambda concurrent executions, per function", metric = "ConcurrentExecutions", stat = "Maximum" },
  ]

  dashboard_queue_widgets = [
    for index, graph in local.dashboard_queue_graphs : {
      type   = "metric"
      x      = (index % 3) * 8
      y      = floor(index / 3) * 6
      width  = 8
      height = 6
      properties = {
        title  = graph.title
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = graph.stat
        metrics = [
          for label, queue in graph.queues :
          ["AWS/SQS", graph.metric, "QueueName", queue, { label = label }]
        ]
        annotations = {
          horizontal = [
            for k, queue in local.queues : { label = "${k} alarm", value = queue.max_age_s } if graph.key == "oldest"
          ]
        }
      }
    }
  ]

  dashboard_function_widgets = [
    for index, graph in local.dashboard_function_graphs : {
      type   = "metric"
      x      = (index % 3) * 8
      y      = 12 + floor(index / 3) * 6
      width  = 8
      height = 6
      properties = {
        title  = graph.title
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = graph.stat
        metrics = [
          for role, function in local.functions :
          ["AWS/Lambda", graph.metric, "FunctionName", function, { label = role }]
        ]
      }
    }
  ]

  dashboard_other_widgets = [
    {
      type   = "metric"
      x      = 0
      y      = 24
      width  = 8
      height = 6
      properties = {
        title  = "LLM fallback rate: fallbacks per job processed (%)"
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = "Sum"
        metrics = concat(
          [[{ expression = "IF(${join(" + ", [for key in keys(local.queues) : "q_${key}"])} > 0, 100 * fallbacks / (${join(" + ", [for key in keys(local.queues) : "q_${key}"])}), 0)", label = "fallback rate (%)", id = "rate" }]],
          [[local.job_metrics_namespace, "Fallbacks", { id = "fallbacks", visible = false }]],
          [for key, queue in local.queues : ["AWS/SQS", "NumberOfMessagesDeleted", "QueueName", queue.name, { id = "q_${key}", visible = false }]],
        )
        annotations = { horizontal = [{ label = "alarm", value = var.fallback_rate_alarm_percent }] }
      }
    },
    {
      type   = "metric"
      x      = 8
      y      = 24
      width  = 8
      height = 6
      properties = {
        title  = "Jobs failed and LLM fallbacks (from the functions' logs)"
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = "Sum"
        metrics = [
          for metric in keys(local.job_log_metrics) : [local.job_metrics_namespace, metric, { label = metric }]
        ]
      }
    },
    {
      type   = "metric"
      x      = 16
      y      = 24
      width  = 8
      height = 6
      properties = {
        title  = "HTTP API: requests, 4xx, 5xx"
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = "Sum"
        metrics = [
          for metric in ["Count", "4xx", "5xx"] :
          ["AWS/ApiGateway", metric, "ApiId", aws_apigatewayv2_api.http.id, { label = metric }]
        ]
      }
    },
    {
      type   = "metric"
      x      = 0
      y      = 30
      width  = 8
      height = 6
      properties = {
        title  = "HTTP API latency p50 / p95 (ms; long-polls hold up to 25 s)"
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        metrics = [
          for stat in ["p50", "p95"] :
          ["AWS/ApiGateway", "Latency", "ApiId", aws_apigatewayv2_api.http.id, { stat = stat, label = stat }]
        ]
      }
    },
    {
      type   = "metric"
      x      = 8
      y      = 30
      width  = 8
      height = 6
      properties = {
        title  = "DynamoDB throttles and system errors"
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = "Sum"
        metrics = [
          for metric in ["ReadThrottleEvents", "WriteThrottleEvents", "SystemErrors"] :
          ["AWS/DynamoDB", metric, "TableName", aws_dynamodb_table.main.name, { label = metric }]
        ]
      }
    },
    {
      type   = "metric"
      x      = 16
      y      = 30
      width  = 8
      height = 6
      properties = {
        title  = "DynamoDB capacity consumed (the bill's request units)"
        region = local.dashboard_region
        view   = "timeSeries"
        period = local.dashboard_period
        stat   = "Sum"
        metrics = [
          for metric in ["ConsumedWriteCapacityUnits", "ConsumedReadCapacityUnits"] :
          ["AWS/DynamoDB", metric, "TableName", aws_dynamodb_table.main.name, { label = metric }]
        ]
      }
    },
    {
      type   = "alarm"
      x      = 0
      y      = 36
      width  = 24
      height = 4
      properties = {
        title = "Alarms"
        alarms = concat(
          [for alarm in aws_cloudwatch_metric_alarm.dlq_not_empty : alarm.arn],
          [for alarm in aws_cloudwatch_metric_alarm.queue_age : alarm.arn],
          [for alarm in aws_cloudwatch_metric_alarm.function_errors : alarm.arn],
          [for alarm in aws_cloudwatch_metric_alarm.function_throttles : alarm.arn],
          [aws_cloudwatch_metric_alarm.failed_jobs.arn, aws_cloudwatch_metric_alarm.fallback_rate.arn],
        )
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat(
      local.dashboard_queue_widgets,
      local.dashboard_function_widgets,
      local.dashboard_other_widgets,
    )
  })
}
