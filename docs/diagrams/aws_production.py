"""02: the AWS layout as infra/terraform builds it (one image, three Lambda functions)."""

from __future__ import annotations

from pathlib import Path

from diagram_parts import FALLBACK, canvas, edge, group, node
from diagram_parts import Component as C

FILENAME = "02_aws_production"
TITLE = "chatjobs on AWS (infra/terraform)"

AWS = "diagrams.aws"
CLIENT = C("clients\nchatjobs CLI, curl", "code", "chatjobs_cli", "diagrams.onprem.client.Users")
GATEWAY = C(
    "API Gateway\nHTTP API", "terraform", "aws_apigatewayv2_api.http", f"{AWS}.network.APIGateway"
)
API = C(
    "api Lambda\nFastAPI via Mangum",
    "terraform",
    "aws_lambda_function.api",
    f"{AWS}.compute.Lambda",
)
JOBS = C("jobs queue\nsingle submits", "terraform", "aws_sqs_queue.jobs", f"{AWS}.integration.SQS")
BATCH = C("batch queue\nbatch jobs", "terraform", "aws_sqs_queue.batch", f"{AWS}.integration.SQS")
JOBS_DLQ = C(
    "jobs DLQ\nafter 5 receives",
    "terraform",
    "aws_sqs_queue.jobs_dlq",
    f"{AWS}.integration.SimpleQueueServiceSqsQueue",
)
BATCH_DLQ = C(
    "batch DLQ\nafter 5 receives",
    "terraform",
    "aws_sqs_queue.batch_dlq",
    f"{AWS}.integration.SimpleQueueServiceSqsQueue",
)
WORKER = C(
    "worker Lambda\nSQS batches, partial failures",
    "terraform",
    "aws_lambda_function.worker",
    f"{AWS}.compute.Lambda",
)
RULE = C(
    "EventBridge\nrate(1 minute)",
    "terraform",
    "aws_cloudwatch_event_rule.scheduler",
    f"{AWS}.integration.EventbridgeScheduler",
)
SCHEDULER = C(
    "scheduler Lambda\nsweeps, webhook retries",
    "terraform",
    "aws_lambda_function.scheduler",
    f"{AWS}.compute.Lambda",
)
TABLE = C(
    "DynamoDB table\njobs, batches, cache,\nrate windows",
    "terraform",
    "aws_dynamodb_table.main",
    f"{AWS}.database.Dynamodb",
)
SECRET = C(
    "Secrets Manager\none JSON secret",
    "terraform",
    "aws_secretsmanager_secret.app",
    f"{AWS}.security.SecretsManager",
)
LOGS = C(
    "CloudWatch Logs\nper function",
    "terraform",
    "aws_cloudwatch_log_group.function",
    f"{AWS}.management.CloudwatchLogs",
)
ALARMS = C(
    "CloudWatch alarms\nDLQ not empty, queue age,\nerrors, throttles",
    "terraform",
    "aws_cloudwatch_metric_alarm.dlq_not_empty",
    f"{AWS}.management.CloudwatchAlarm",
)
JOB_ALARMS = C(
    "job alarms\nfailed jobs, fallback rate\n(from the log lines)",
    "terraform",
    "aws_cloudwatch_metric_alarm.fallback_rate",
    f"{AWS}.management.CloudwatchAlarm",
)
TOPIC = C(
    "SNS topic\nalarm_email or yours",
    "terraform",
    "aws_sns_topic.alarms",
    f"{AWS}.integration.SimpleNotificationServiceSnsTopic",
)
ELASTICACHE = C(
    "ElastiCache Redis\noptional (VPC)",
    "terraform",
    "aws_elasticache_replication_group.cache",
    f"{AWS}.database.ElasticacheForRedis",
)
ECR = C(
    "ECR\none image, three handlers", "terraform", "aws_ecr_repository.app", f"{AWS}.compute.ECR"
)
GEMINI = C(
    "Google Gemini, first\nGEMINI_API_KEY", "env", "GEMINI_API_KEY", "diagrams.gcp.ml.AIPlatform"
)
OPENROUTER = C(
    "OpenRouter, fallback\nOPENROUTER_API_KEY",
    "env",
    "OPENROUTER_API_KEY",
    "diagrams.onprem.network.Internet",
)
RECEIVER = C(
    "webhook receivers\nWebhookSender, signed",
    "code",
    "shared.webhooks.delivery:WebhookSender",
    "diagrams.onprem.client.Client",
)

COMPONENTS = [
    CLIENT,
    GATEWAY,
    API,
    JOBS,
    BATCH,
    JOBS_DLQ,
    BATCH_DLQ,
    WORKER,
    RULE,
    SCHEDULER,
    TABLE,
    SECRET,
    LOGS,
    ALARMS,
    JOB_ALARMS,
    TOPIC,
    ELASTICACHE,
    ECR,
    GEMINI,
    OPENROUTER,
    RECEIVER,
]


def draw(out_dir: Path, render: bool = True) -> None:
    with canvas(TITLE, out_dir / FILENAME, render=render, splines="spline", ranksep="1.3"):
        client = node(CLIENT)
        with group("AWS account (region)", "#FBFBFD"):
            gateway, ecr, secret = node(GATEWAY), node(ECR), node(SECRET)
            rule, api, scheduler = node(RULE), node(API), node(SCHEDULER)
            with group("SQS"):
                jobs, batch = node(JOBS), node(BATCH)
                jobs_dlq, batch_dlq = node(JOBS_DLQ), node(BATCH_DLQ)
            worker = node(WORKER)
            table = node(TABLE)
            elasticache = node(ELASTICACHE, style="dashed")
            with group("CloudWatch"):
                logs, alarms, job_alarms = node(LOGS), node(ALARMS), node(JOB_ALARMS)
            topic = node(TOPIC, style="dashed")
        with group("outside AWS", "#FFF8F0"):
            gemini, openrouter, receiver = node(GEMINI), node(OPENROUTER), node(RECEIVER)

        client >> edge("HTTPS /v1/...") >> gateway >> edge() >> api
        api >> edge("enqueue") >> [jobs, batch]
        jobs >> edge("event source mapping") >> worker
        batch >> edge() >> worker
        jobs >> edge("redrive", style="dashed") >> jobs_dlq
        batch >> edge("redrive", style="dashed") >> batch_dlq
        rule >> edge("every minute") >> scheduler
        scheduler >> edge("lost jobs") >> [jobs, batch]  # each back to its own queue
        functions = [api, worker, scheduler]
        functions >> edge() >> table
        [api, worker] >> edge("if enabled", style="dashed") >> elasticache
        ecr >> edge("image", style="dotted") >> functions
        secret >> edge("cold start", style="dotted") >> functions
        worker >> edge("generateContent") >> gemini
        worker >> edge("fallback", color=FALLBACK) >> openrouter
        [worker, scheduler] >> edge("signed POST") >> receiver
        [jobs_dlq, batch_dlq] >> edge(style="dotted") >> alarms
        functions >> edge("logs", style="dotted") >> logs
        logs >> edge("metric filters", style="dotted") >> job_alarms
        [alarms, job_alarms] >> edge("if configured", style="dashed") >> topic
