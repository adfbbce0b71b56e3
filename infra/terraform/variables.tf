# ---------------------------------------------------------------------------------------------
# Names. The defaults equal shared/adapters/aws/names.py (tests/infra/test_terraform.py checks).
# ---------------------------------------------------------------------------------------------

variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of the per-deployment resource names: Lambda functions, IAM roles, log groups, the API, the ECR repository, alarms."
  type        = string
  default     = "chatjobs"
}

variable "table_name" {
  description = "DynamoDB table (DYNAMODB_TABLE). Default: names.TABLE."
  type        = string
  default     = "chatjobs"
}

variable "jobs_queue_name" {
  description = "SQS queue for single submits and retries (SQS_QUEUE_URL). Default: names.JOBS_QUEUE. Its DLQ is this name + \"-dlq\"."
  type        = string
  default     = "chatjobs-jobs"
}

variable "batch_queue_name" {
  description = "SQS queue for batch jobs (SQS_BATCH_QUEUE_URL). Default: names.BATCH_QUEUE. Its DLQ is this name + \"-dlq\"."
  type        = string
  default     = "chatjobs-batch-jobs"
}

variable "high_queue_name" {
  description = "SQS queue for high-priority jobs, singles and batch (SQS_HIGH_QUEUE_URL). Default: names.HIGH_QUEUE. Its DLQ is this name + \"-dlq\"."
  type        = string
  default     = "chatjobs-high-jobs"
}

variable "low_queue_name" {
  description = "SQS queue for low-priority jobs, singles and batch (SQS_LOW_QUEUE_URL). Default: names.LOW_QUEUE. Its DLQ is this name + \"-dlq\"."
  type        = string
  default     = "chatjobs-low-jobs"
}

variable "secret_name" {
  description = "Secrets Manager secret holding the JSON object of API_KEYS, GEMINI_API_KEY, OPENROUTER_API_KEY, WEBHOOK_SIGNING_SECRET, ADMIN_API_KEYS, KEY_HASH_SECRET (AWS_SECRET_ID). Default: names.SECRET_ID. Terraform creates the secret, never its value."
  type        = string
  default     = "chatjobs/app"
}

variable "tags" {
  description = "Extra tags applied to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Image and functions
# ---------------------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the image (built from infra/docker/Dockerfile.lambda) in the ECR repository this stack creates, e.g. the git commit SHA. Tags are immutable: push a new tag for every release."
  type        = string
}

variable "lambda_architecture" {
  description = "CPU architecture of the image and the functions: arm64 (Graviton, 20% cheaper per GB-second than x86_64; build the image with --platform linux/arm64), or x86_64 (build with --platform linux/amd64)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "api_memory_mb" {
  description = "Memory of the API function in MB (CPU scales with it)."
  type        = number
  default     = 512
}

variable "api_timeout_s" {
  description = "Timeout of the API function in seconds. API Gateway HTTP APIs give up after 30 s, so long-polls (?wait=) must finish inside it."
  type        = number
  default     = 30

  validation {
    condition     = var.api_timeout_s >= 3 && var.api_timeout_s <= 30
    error_message = "api_timeout_s must be between 3 and 30 (the HTTP API integration limit)."
  }
}

variable "worker_memory_mb" {
  description = "Memory of the SQS worker function in MB. 256 holds the worker (about 70 MB once imported) and WORKER_CONCURRENCY jobs that wait on the LLM; watch Max Memory Used in its REPORT log lines."
  type        = number
  default     = 256
}

variable "worker_timeout_s" {
  description = "Timeout of the SQS worker function in seconds. Must cover one job (2 x llm_timeout_s + 5, primary then fallback) plus its first webhook attempt. The queues' visibility timeout is 6x this value."
  type        = number
  default     = 90

  validation {
    condition     = var.worker_timeout_s >= 30 && var.worker_timeout_s <= 900
    error_message = "worker_timeout_s must be between 30 and 900 seconds."
  }
}

variable "scheduler_memory_mb" {
  description = "Memory of the scheduled (sweeps, webhook retries) function in MB."
  type        = number
  default     = 256
}

variable "scheduler_timeout_s" {
  description = "Timeout of the scheduled function in seconds; it runs every minute, so keep it at most 60."
  type        = number
  default     = 55

  validation {
    condition     = var.scheduler_timeout_s >= 10 && var.scheduler_timeout_s <= 60
    error_message = "scheduler_timeout_s must be between 10 and 60 (it runs every minute)."
  }
}

variable "api_reserved_concurrency" {
  description = "Reserved concurrency of the API function; null leaves it on the account's unreserved pool (accounts whose concurrency quota is still 10 cannot reserve any)."
  type        = number
  default     = null
}

variable "worker_reserved_concurrency" {
  description = "Reserved concurrency of the worker function; null: unreserved. The per-queue caps are jobs_max_concurrency and batch_max_concurrency."
  type        = number
  default     = null
}

variable "scheduler_reserved_concurrency" {
  description = "Reserved concurrency of the scheduled function (1 guarantees sweeps never overlap); null: unreserved."
  type        = number
  default     = null
}

variable "lambda_tracing_mode" {
  description = "X-Ray tracing of the three functions. PassThrough (default): Lambda records no trace of its own (nothing upstream of these functions is traced, so none are recorded and none billed). Active: Lambda samples the first invocation each second and 5% of the rest, which at 10,000 requests a day is nearly every invocation, about $3.40 a month (docs/DEPLOYMENT.md). The code carries no X-Ray SDK, so a trace shows Lambda's own segments: init, invocation, overhead."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.lambda_tracing_mode)
    error_message = "lambda_tracing_mode must be PassThrough or Active."
  }
}

variable "api_access_log_class" {
  description = "Log class of the API Gateway access log group: INFREQUENT_ACCESS (half the ingestion price; Logs Insights works, metric filters and Live Tail do not, and none are used on it) or STANDARD. Changing it replaces the group, and the access logs in it."
  type        = string
  default     = "INFREQUENT_ACCESS"

  validation {
    condition     = contains(["STANDARD", "INFREQUENT_ACCESS"], var.api_access_log_class)
    error_message = "api_access_log_class must be STANDARD or INFREQUENT_ACCESS."
  }
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group (functions and API access logs), in days."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------------------------------------
# Application settings passed as environment variables (names from shared/config.py Settings).
# Secrets are NOT here: they live in the Secrets Manager secret.
# ---------------------------------------------------------------------------------------------

variable "gemini_model" {
  description = "GEMINI_MODEL: the primary model."
  type        = string
  default     = "gemini-2.5-flash"
}

variable "openrouter_model" {
  description = "OPENROUTER_MODEL: the fallback model."
  type        = string
  default     = "openai/gpt-4o-mini"
}

variable "llm_timeout_s" {
  description = "LLM_TIMEOUT_S: timeout of one LLM call in seconds."
  type        = number
  default     = 20
}

variable "rate_limit" {
  description = "RATE_LIMIT: per-tenant API rate limit, e.g. 120/minute (enforced in DynamoDB, shared by every API container)."
  type        = string
  default     = "120/minute"
}

variable "worker_concurrency" {
  description = "WORKER_CONCURRENCY: how many SQS records one worker invocation runs at the same time (at most the batch size is delivered per invocation)."
  type        = number
  default     = 10
}

variable "gemini_rpm" {
  description = "GEMINI_RPM: Gemini calls per minute across every worker container (counted in DynamoDB); 0: no quota."
  type        = number
  default     = 0
  validation {
    condition     = var.gemini_rpm >= 0 && floor(var.gemini_rpm) == var.gemini_rpm
    error_message = "gemini_rpm must be a whole number, 0 or more."
  }
}

variable "gemini_tpm" {
  description = "GEMINI_TPM: Gemini tokens per minute across every worker container, counted from each call's reported usage; 0: no quota."
  type        = number
  default     = 0
  validation {
    condition     = var.gemini_tpm >= 0 && floor(var.gemini_tpm) == var.gemini_tpm
    error_message = "gemini_tpm must be a whole number, 0 or more."
  }
}

variable "openrouter_rpm" {
  description = "OPENROUTER_RPM: OpenRouter calls per minute across every worker container; 0: no quota."
  type        = number
  default     = 0
  validation {
    condition     = var.openrouter_rpm >= 0 && floor(var.openrouter_rpm) == var.openrouter_rpm
    error_message = "openrouter_rpm must be a whole number, 0 or more."
  }
}

variable "openrouter_tpm" {
  description = "OPENROUTER_TPM: OpenRouter tokens per minute across every worker container; 0: no quota."
  type        = number
  default     = 0
  validation {
    condition     = var.openrouter_tpm >= 0 && floor(var.openrouter_tpm) == var.openrouter_tpm
    error_message = "openrouter_tpm must be a whole number, 0 or more."
  }
}

variable "cache_ttl_s" {
  description = "CACHE_TTL_S: lifetime of a cached result in seconds."
  type        = number
  default     = 86400
}

variable "job_retention_days" {
  description = "JOB_RETENTION_DAYS: days a job or batch is kept once it has ended (a DynamoDB TTL on its item; usage counters are kept). 0 keeps everything."
  type        = number
  default     = 30

  validation {
    condition     = var.job_retention_days >= 0 && floor(var.job_retention_days) == var.job_retention_days
    error_message = "job_retention_days must be a whole number of days, 0 or more."
  }
}

variable "files_retention_days" {
  description = "Days an OpenAI-dialect file (batch input, output, error file) or batch record is kept in the files bucket before S3's lifecycle deletes it."
  type        = number
  default     = 30

  validation {
    condition     = var.files_retention_days >= 1 && floor(var.files_retention_days) == var.files_retention_days
    error_message = "files_retention_days must be a whole number of days, 1 or more."
  }
}

variable "webhook_retry_schedule" {
  description = "WEBHOOK_RETRY_SCHEDULE: seconds between webhook attempts, comma-separated."
  type        = string
  default     = "0,5,300,1800,7200,18000,36000,36000"
}

variable "batch_max_requests" {
  description = "BATCH_MAX_REQUESTS: most requests accepted in one batch."
  type        = number
  default     = 50000
}

# ---------------------------------------------------------------------------------------------
# Queues and scaling
# ---------------------------------------------------------------------------------------------

variable "jobs_batch_size" {
  description = "Records per worker invocation from the jobs queue (1-10)."
  type        = number
  default     = 10

  validation {
    condition     = var.jobs_batch_size >= 1 && var.jobs_batch_size <= 10
    error_message = "jobs_batch_size must be between 1 and 10."
  }
}

variable "jobs_batching_window_s" {
  description = "Seconds Lambda may wait to fill a batch from the jobs queue; 0 keeps single submits fast."
  type        = number
  default     = 0
}

variable "jobs_max_concurrency" {
  description = "scaling_config.maximum_concurrency of the jobs queue: most concurrent worker invocations for single jobs (2-1000). Keep it above batch_max_concurrency so a huge batch never delays single submits."
  type        = number
  default     = 20

  validation {
    condition     = var.jobs_max_concurrency >= 2 && var.jobs_max_concurrency <= 1000
    error_message = "jobs_max_concurrency must be between 2 and 1000."
  }
}

variable "batch_batch_size" {
  description = "Records per worker invocation from the batch queue (1-10)."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_batch_size >= 1 && var.batch_batch_size <= 10
    error_message = "batch_batch_size must be between 1 and 10."
  }
}

variable "batch_batching_window_s" {
  description = "Seconds Lambda may wait to fill a batch from the batch queue (fuller invocations, fewer of them)."
  type        = number
  default     = 2
}

variable "batch_max_concurrency" {
  description = "scaling_config.maximum_concurrency of the batch queue: most concurrent worker invocations for batch jobs (2-1000). Lower than jobs_max_concurrency."
  type        = number
  default     = 5

  validation {
    condition     = var.batch_max_concurrency >= 2 && var.batch_max_concurrency <= 1000
    error_message = "batch_max_concurrency must be between 2 and 1000."
  }
}

variable "high_max_concurrency" {
  description = "scaling_config.maximum_concurrency of the high-priority queue (2-1000): its weight among the queues. Keep it at or above jobs_max_concurrency."
  type        = number
  default     = 30

  validation {
    condition     = var.high_max_concurrency >= 2 && var.high_max_concurrency <= 1000
    error_message = "high_max_concurrency must be between 2 and 1000."
  }
}

variable "low_max_concurrency" {
  description = "scaling_config.maximum_concurrency of the low-priority queue (2-1000): its weight among the queues. Keep it at or below batch_max_concurrency."
  type        = number
  default     = 2

  validation {
    condition     = var.low_max_concurrency >= 2 && var.low_max_concurrency <= 1000
    error_message = "low_max_concurrency must be between 2 and 1000."
  }
}

# ---------------------------------------------------------------------------------------------
# API Gateway
# ---------------------------------------------------------------------------------------------

variable "api_throttling_burst_limit" {
  description = "API Gateway stage burst limit (requests)."
  type        = number
  default     = 100
}

variable "api_throttling_rate_limit" {
  description = "API Gateway stage steady-state rate limit (requests per second)."
  type        = number
  default     = 50
}

# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------

variable "alarm_sns_topic_arn" {
  description = "An existing SNS topic notified when an alarm fires or recovers. null: the stack creates its own topic when alarm_email is set, else alarms only show in the console."
  type        = string
  default     = null
}

variable "alarm_email" {
  description = "With alarm_sns_topic_arn null: create the topic <name>-alarms and subscribe this address (AWS mails a confirmation link first). null: no topic."
  type        = string
  default     = null
}

variable "failed_jobs_alarm_threshold" {
  description = "Alarm when more than this many jobs end failed in 5 minutes (llm_rejected, llm_unavailable, attempts_exhausted, queue_unavailable)."
  type        = number
  default     = 10
}

variable "fallback_rate_alarm_percent" {
  description = "Alarm when more than this share (percent) of the job messages processed in 15 minutes fell back from Gemini to OpenRouter."
  type        = number
  default     = 20
}

variable "jobs_queue_max_age_s" {
  description = "Alarm when the oldest message on the jobs queue is older than this (seconds)."
  type        = number
  default     = 300
}

variable "batch_queue_max_age_s" {
  description = "Alarm when the oldest message on the batch queue is older than this (seconds); big batches legitimately wait longer."
  type        = number
  default     = 3600
}

variable "high_queue_max_age_s" {
  description = "Alarm when the oldest message on the high-priority queue is older than this (seconds)."
  type        = number
  default     = 120
}

variable "low_queue_max_age_s" {
  description = "Alarm when the oldest message on the low-priority queue is older than this (seconds); low-priority work waits while anything else runs."
  type        = number
  default     = 14400
}

variable "lambda_errors_threshold" {
  description = "Alarm when a function reports more than this many Errors in 5 minutes."
  type        = number
  default     = 0
}

# ---------------------------------------------------------------------------------------------
# Data protection
# ---------------------------------------------------------------------------------------------

variable "table_deletion_protection" {
  description = "Deletion protection of the DynamoDB table (turn off only to destroy a test stack)."
  type        = bool
  default     = true
}

variable "secret_recovery_window_days" {
  description = "Days a destroyed secret can still be restored (7-30), during which its name stays taken; 0 deletes it at once (to destroy a test stack)."
  type        = number
  default     = 30

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days is 0, or 7 to 30."
  }
}

variable "ecr_force_delete" {
  description = "Let terraform destroy delete the ECR repository with the images still in it (to destroy a test stack)."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Optional ElastiCache (off by default: it needs a VPC, so the Lambdas need a NAT gateway to reach
# the LLM APIs and webhooks, which costs more than the whole default stack).
# ---------------------------------------------------------------------------------------------

variable "enable_elasticache" {
  description = "Create an ElastiCache (Valkey/Redis) node for the cache and rate limits and put the functions in the VPC (CACHE_BACKEND=redis, REDIS_URL). Requires vpc_id and private_subnet_ids with a NAT route."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC of the ElastiCache node and the functions (only with enable_elasticache)."
  type        = string
  default     = null
}

variable "private_subnet_ids" {
  description = "Private subnets (with a route to a NAT gateway) for the functions and the cache (only with enable_elasticache)."
  type        = list(string)
  default     = []
}

variable "elasticache_engine" {
  description = "ElastiCache engine: valkey (cheaper) or redis."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.elasticache_engine)
    error_message = "elasticache_engine must be valkey or redis."
  }
}

variable "elasticache_engine_version" {
  description = "ElastiCache engine version (major.minor, e.g. 8.0 for valkey, 7.1 for redis); null: the engine's current default."
  type        = string
  default     = null
}

variable "elasticache_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"
}
