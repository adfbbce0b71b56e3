"""Create the AWS layout's table, queues and secret where AWS_ENDPOINT_URL points (moto,
LocalStack), with the names Terraform gives them. Idempotent: what exists is left alone.

    AWS_ENDPOINT_URL=http://127.0.0.1:5000 python -m shared.adapters.aws.setup

Prints the environment to give the API and workers (SQS_QUEUE_URL=…, SQS_BATCH_QUEUE_URL=…,
SQS_HIGH_QUEUE_URL=…, SQS_LOW_QUEUE_URL=…).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients

# Terraform's queue settings (infra/terraform/sqs.tf; tests/infra/test_terraform.py compares).
VISIBILITY_TIMEOUT_S = 540  # 6 x the worker Lambda's timeout (worker_timeout_s, 90 s)
QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
    "MessageRetentionPeriod": str(4 * 86_400),
    "ReceiveMessageWaitTimeSeconds": "20",
    "SqsManagedSseEnabled": "true",
}
DLQ_ATTRIBUTES = {"MessageRetentionPeriod": str(14 * 86_400), "SqsManagedSseEnabled": "true"}


@dataclass(frozen=True)
class AwsLayout:
    table: str
    queue_url: str
    batch_queue_url: str
    secret_id: str
    files_bucket: str
    high_queue_url: str | None = None  # priorities (docs/adr/0015)
    low_queue_url: str | None = None

    def env(self) -> dict[str, str]:
        return {
            "STORE_BACKEND": "dynamodb",
            "QUEUE_BACKEND": "sqs",
            "CACHE_BACKEND": "dynamodb",
            "DYNAMODB_TABLE": self.table,
            "SQS_QUEUE_URL": self.queue_url,
            "SQS_BATCH_QUEUE_URL": self.batch_queue_url,
            "AWS_SECRET_ID": self.secret_id,
            "FILES_BUCKET": self.files_bucket,
        } | {
            name: url
            for name, url in (
                ("SQS_HIGH_QUEUE_URL", self.high_queue_url),
                ("SQS_LOW_QUEUE_URL", self.low_queue_url),
            )
            if url
        }


def table_definition(table: str) -> dict[str, Any]:
    keys = {names.PARTITION_KEY, names.SORT_KEY} | {a for p in names.INDEXES.values() for a in p}
    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in sorted(keys)],
        "KeySchema": _key_schema(names.PARTITION_KEY, names.SORT_KEY),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": n,
                "KeySchema": _key_schema(h, r),
                "Projection": projection(n),
            }
            for n, (h, r) in names.INDEXES.items()
        ],
    }


def projection(index: str) -> dict[str, Any]:
    """names.INDEX_PROJECTIONS as DynamoDB's Projection: INCLUDE those attributes, or KEYS_ONLY."""
    attributes = names.INDEX_PROJECTIONS[index]
    if not attributes:
        return {"ProjectionType": "KEYS_ONLY"}
    return {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(attributes)}


def _key_schema(hash_key: str, range_key: str) -> list[dict[str, str]]:
    return [
        {"AttributeName": hash_key, "KeyType": "HASH"},
        {"AttributeName": range_key, "KeyType": "RANGE"},
    ]


async def create_table(clients: AwsClients, table: str) -> None:
    """Create the table unless it exists. CreateTable itself answers that: ListTables shows only
    its first page (100 tables), so a table past it would look missing."""
    ddb = await clients.client("dynamodb")
    try:
        await ddb.create_table(**table_definition(table))
    except ddb.exceptions.ResourceInUseException:
        return
    await ddb.get_waiter("table_exists").wait(TableName=table)
    ttl = {"Enabled": True, "AttributeName": names.TTL_ATTRIBUTE}
    await ddb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)


async def create_queue(clients: AwsClients, name: str) -> str:
    """The queue and its DLQ (redrive after MAX_RECEIVE_COUNT receives); returns the queue URL."""
    sqs = await clients.client("sqs")
    dlq = await sqs.create_queue(QueueName=name + names.DLQ_SUFFIX, Attributes=DLQ_ATTRIBUTES)
    dlq_attrs = await sqs.get_queue_attributes(
        QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"]
    )
    redrive = {
        "deadLetterTargetArn": dlq_attrs["Attributes"]["QueueArn"],
        "maxReceiveCount": str(names.MAX_RECEIVE_COUNT),
    }
    attributes = {**QUEUE_ATTRIBUTES, "RedrivePolicy": json.dumps(redrive)}
    queue = await sqs.create_queue(QueueName=name, Attributes=attributes)
    return str(queue["QueueUrl"])


async def create_bucket(clients: AwsClients, bucket: str) -> None:
    """The files bucket unless it exists (encrypted at rest by S3's default, as on AWS)."""
    s3 = await clients.client("s3")
    try:
        await s3.create_bucket(Bucket=bucket)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        return


async def create_secret(clients: AwsClients, secret_id: str, values: dict[str, str]) -> None:
    sm = await clients.client("secretsmanager")
    try:
        await sm.create_secret(Name=secret_id, SecretString=json.dumps(values))
    except sm.exceptions.ResourceExistsException:
        await sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(values))


async def create_layout(
    clients: AwsClients,
    *,
    prefix: str = "",
    table: str | None = None,
    secret: dict[str, str] | None = None,
) -> AwsLayout:
    """Everything the AWS layout needs. `prefix` keeps parallel test runs apart."""
    table = table or prefix + names.TABLE
    await create_table(clients, table)
    queue_url = await create_queue(clients, prefix + names.JOBS_QUEUE)
    batch_queue_url = await create_queue(clients, prefix + names.BATCH_QUEUE)
    secret_id = prefix + names.SECRET_ID
    await create_secret(clients, secret_id, secret or {})
    bucket = prefix + names.FILES_BUCKET
    await create_bucket(clients, bucket)
    high_queue_url = await create_queue(clients, prefix + names.HIGH_QUEUE)
    low_queue_url = await create_queue(clients, prefix + names.LOW_QUEUE)
    return AwsLayout(
        table, queue_url, batch_queue_url, secret_id, bucket, high_queue_url, low_queue_url
    )


async def _main() -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    clients = AwsClients(endpoint_url=endpoint, region=os.environ.get("AWS_REGION"))
    try:
        secret = {k: os.environ[k] for k in names.SECRET_KEYS if os.environ.get(k)}
        table = os.environ.get("DYNAMODB_TABLE") or names.TABLE
        layout = await create_layout(clients, table=table, secret=secret)
    finally:
        await clients.close()
    for key, value in layout.env().items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
