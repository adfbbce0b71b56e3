"""`python -m shared.adapters.aws.setup` creates what Terraform describes, on moto."""

from __future__ import annotations

import json

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import DLQ_ATTRIBUTES, QUEUE_ATTRIBUTES, AwsLayout, create_layout


async def test_table_has_every_index_and_a_ttl(
    aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    ddb = await aws_clients.client("dynamodb")
    table = (await ddb.describe_table(TableName=aws_layout.table))["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == set(names.INDEXES)
    ttl = await ddb.describe_time_to_live(TableName=aws_layout.table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == names.TTL_ATTRIBUTE


async def test_queues_redrive_to_their_dlq(aws_layout: AwsLayout, aws_clients: AwsClients) -> None:
    sqs = await aws_clients.client("sqs")
    for url in (aws_layout.queue_url, aws_layout.batch_queue_url):
        attrs = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
        redrive = json.loads(attrs["Attributes"]["RedrivePolicy"])
        assert redrive["maxReceiveCount"] == names.MAX_RECEIVE_COUNT
        assert redrive["deadLetterTargetArn"].endswith(names.DLQ_SUFFIX)


async def test_queues_have_terraforms_settings(
    aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    sqs = await aws_clients.client("sqs")
    for url in (aws_layout.queue_url, aws_layout.batch_queue_url):
        attrs = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
        assert attrs["VisibilityTimeout"] == "540"  # as infra/terraform, DEPLOYMENT.md
        assert {k: attrs[k] for k in QUEUE_ATTRIBUTES} == QUEUE_ATTRIBUTES
        dlq = await sqs.get_queue_url(QueueName=url.rsplit("/", 1)[1] + names.DLQ_SUFFIX)
        dlq_attrs = await sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["All"])
        assert {k: dlq_attrs["Attributes"][k] for k in DLQ_ATTRIBUTES} == DLQ_ATTRIBUTES


async def test_setup_twice_is_harmless(aws_clients: AwsClients) -> None:
    first = await create_layout(aws_clients, prefix="twice-", secret={"API_KEYS": "t:k"})
    second = await create_layout(aws_clients, prefix="twice-", secret={"API_KEYS": "t:k2"})
    assert first == second
    sm = await aws_clients.client("secretsmanager")
    value = await sm.get_secret_value(SecretId=second.secret_id)
    assert json.loads(value["SecretString"]) == {"API_KEYS": "t:k2"}
    assert aws_clients.opened == 4  # one client per service (DynamoDB, SQS, Secrets Manager, S3)


async def test_setup_finds_its_table_past_the_first_page_of_tables(
    aws_clients: AwsClients,
) -> None:
    """ListTables answers 100 names a page: an account with more tables must not make setup
    create its existing table again (it failed with ResourceInUseException)."""
    ddb = await aws_clients.client("dynamodb")
    keys = {"AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}]}
    schema = {"KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}]}
    listed = (await ddb.list_tables())["TableNames"]
    for n in range(max(0, 101 - len(listed))):
        await ddb.create_table(
            TableName=f"aaa-filler-{n:03}", BillingMode="PAY_PER_REQUEST", **keys, **schema
        )
    first = await create_layout(aws_clients, prefix="zzz-paged-")
    assert first.table not in (await ddb.list_tables())["TableNames"]  # past the first page
    assert await create_layout(aws_clients, prefix="zzz-paged-") == first


async def test_the_files_bucket_is_made_and_named_in_the_environment(
    aws_layout: AwsLayout, aws_clients: AwsClients
) -> None:
    s3 = await aws_clients.client("s3")
    await s3.head_bucket(Bucket=aws_layout.files_bucket)
    assert aws_layout.env()["FILES_BUCKET"] == aws_layout.files_bucket
