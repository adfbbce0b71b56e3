output "api_url" {
  description = "Base URL of the HTTP API ($default stage), e.g. curl $(terraform output -raw api_url)/healthz."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "ecr_repository_url" {
  description = "ECR repository to push the Lambda image to (docker tag … <this>:<image_tag>)."
  value       = aws_ecr_repository.app.repository_url
}

output "image_uri" {
  description = "Image the three functions run."
  value       = local.image_uri
}

output "function_names" {
  description = "Lambda function names by role (api, worker, scheduler)."
  value = {
    api       = aws_lambda_function.api.function_name
    worker    = aws_lambda_function.worker.function_name
    scheduler = aws_lambda_function.scheduler.function_name
  }
}

output "log_groups" {
  description = "CloudWatch log groups: one per function plus the API Gateway access log."
  value = merge(
    { for role, group in aws_cloudwatch_log_group.function : role => group.name },
    { api_access = aws_cloudwatch_log_group.api_access.name },
  )
}

output "dynamodb_table" {
  description = "DynamoDB table name (DYNAMODB_TABLE)."
  value       = aws_dynamodb_table.main.name
}

output "files_bucket" {
  description = "S3 bucket of the OpenAI dialect's files (FILES_BUCKET)."
  value       = aws_s3_bucket.files.bucket
}

output "jobs_queue_url" {
  description = "SQS queue for single jobs (SQS_QUEUE_URL)."
  value       = aws_sqs_queue.jobs.url
}

output "batch_queue_url" {
  description = "SQS queue for batch jobs (SQS_BATCH_QUEUE_URL)."
  value       = aws_sqs_queue.batch.url
}

output "high_queue_url" {
  description = "SQS queue for high-priority jobs (SQS_HIGH_QUEUE_URL)."
  value       = aws_sqs_queue.high.url
}

output "low_queue_url" {
  description = "SQS queue for low-priority jobs (SQS_LOW_QUEUE_URL)."
  value       = aws_sqs_queue.low.url
}

output "dlq_urls" {
  description = "Dead-letter queues by source queue (jobs, batch, high, low); redrive them from the SQS console or `aws sqs start-message-move-task`."
  value = {
    jobs  = aws_sqs_queue.jobs_dlq.url
    batch = aws_sqs_queue.batch_dlq.url
    high  = aws_sqs_queue.high_dlq.url
    low   = aws_sqs_queue.low_dlq.url
  }
}

output "secret_name" {
  description = "Secrets Manager secret (AWS_SECRET_ID) whose JSON value you set with `aws secretsmanager put-secret-value`."
  value       = aws_secretsmanager_secret.app.name
}

output "secret_arn" {
  description = "ARN of the application secret."
  value       = aws_secretsmanager_secret.app.arn
}

output "redis_endpoint" {
  description = "Primary endpoint of the optional ElastiCache node; null when enable_elasticache is false."
  value       = var.enable_elasticache ? aws_elasticache_replication_group.cache[0].primary_endpoint_address : null
}

output "alarm_topic_arn" {
  description = "The SNS topic alarms notify (alarm_sns_topic_arn, or the one made for alarm_email); null: none."
  value       = local.alarm_topic_arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard of the stack (dashboard.tf) in the AWS console."
  value       = "https://${var.aws_region}.console.aws.amazon.com/cloudwatch/home?region=${var.aws_region}#dashboards/dashboard/${aws_cloudwatch_dashboard.main.dashboard_name}"
}
