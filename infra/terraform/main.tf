locals {
  dlq_suffix = "-dlq" # names.DLQ_SUFFIX

  # Lambda's guidance for SQS event sources: visibility timeout at least 6x the function timeout,
  # so a record is not redelivered while a (retried, throttled) invocation may still hold it.
  queue_visibility_timeout_s = var.worker_timeout_s * 6

  # Failed receives before a message moves to its DLQ (names.MAX_RECEIVE_COUNT).
  max_receive_count = 5

  functions = {
    api       = "${var.name}-api"
    worker    = "${var.name}-worker"
    scheduler = "${var.name}-scheduler"
  }

  image_uri = "${aws_ecr_repository.app.repository_url}:${var.image_tag}"

  # Environment: Settings fields only (shared/config.py), the same for every function where the
  # API and the workers must agree (models feed the cache key). Secrets come from AWS_SECRET_ID.
  common_env = {
    STORE_BACKEND          = "dynamodb"
    QUEUE_BACKEND          = "sqs"
    CACHE_BACKEND          = var.enable_elasticache ? "redis" : "dynamodb"
    DYNAMODB_TABLE         = aws_dynamodb_table.main.name
    SQS_QUEUE_URL          = aws_sqs_queue.jobs.url
    SQS_BATCH_QUEUE_URL    = aws_sqs_queue.batch.url
    SQS_HIGH_QUEUE_URL     = aws_sqs_queue.high.url
    SQS_LOW_QUEUE_URL      = aws_sqs_queue.low.url
    AWS_SECRET_ID          = aws_secretsmanager_secret.app.name
    CACHE_TTL_S            = tostring(var.cache_ttl_s)
    JOB_RETENTION_DAYS     = tostring(var.job_retention_days)
    GEMINI_MODEL           = var.gemini_model
    OPENROUTER_MODEL       = var.openrouter_model
    LLM_TIMEOUT_S          = tostring(var.llm_timeout_s)
    WEBHOOK_RETRY_SCHEDULE = var.webhook_retry_schedule
  }

  redis_env = var.enable_elasticache ? {
    REDIS_URL = "rediss://${aws_elasticache_replication_group.cache[0].primary_endpoint_address}:6379/0"
  } : {}

  api_env = merge(local.common_env, local.redis_env, {
    RATE_LIMIT         = var.rate_limit
    BATCH_MAX_REQUESTS = tostring(var.batch_max_requests)
    # A job is one DynamoDB item (400 KB at most), holding the request and its answer: keep a
    # request well under that. A Lambda request payload is at most 6 MB, so is a batch body.
    MAX_BODY_BYTES  = "300000"
    BATCH_MAX_BYTES = "6000000"
    # Only the API reads and writes the OpenAI dialect's files (uploads, outputs made on read).
    FILES_BUCKET = aws_s3_bucket.files.bucket
    # API Gateway's HTTP API gives up on an integration after 29 s: answer the wait_timeout first.
    CHAT_COMPLETIONS_WAIT_S = "25"
  })

  worker_env = merge(local.common_env, local.redis_env, {
    WORKER_CONCURRENCY = tostring(var.worker_concurrency)
    # provider quotas, counted in DynamoDB by every worker container (docs/adr/0014); 0: none
    GEMINI_RPM     = tostring(var.gemini_rpm)
    GEMINI_TPM     = tostring(var.gemini_tpm)
    OPENROUTER_RPM = tostring(var.openrouter_rpm)
    OPENROUTER_TPM = tostring(var.openrouter_tpm)
  })

  scheduler_env = merge(local.common_env, local.redis_env)

  alarm_topic_arn = var.alarm_sns_topic_arn != null ? var.alarm_sns_topic_arn : one(aws_sns_topic.alarms[*].arn)
  alarm_actions   = local.alarm_topic_arn == null ? [] : [local.alarm_topic_arn]
}
