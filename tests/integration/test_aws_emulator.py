"""`make aws-local`'s moto server (shared/adapters/aws/emulator.py) keeps DynamoDB's atomicity:
counters stay exact while transactions are cancelled beside them, and a cancelled transaction
undoes its own writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.adapters.aws.setup import table_definition

pytestmark = pytest.mark.integration

THREADS = 8
ROUNDS = 25


@pytest.fixture(scope="module")
def dynamodb(moto_endpoint: str) -> Iterator[Any]:
    yield boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "-"}}


def add_one(dynamodb: Any, table: str) -> None:
    dynamodb.update_item(
        TableName=table, Key=key("counter"), UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )  # fmt: skip


def cancelled_transaction(dynamodb: Any, table: str, n: int) -> None:
    """Writes an item, then fails a condition: DynamoDB cancels both."""
    try:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": key(f"undone-{n}")}},
                {"ConditionCheck": {
                    "TableName": table, "Key": key("counter"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }},
            ]
        )  # fmt: skip
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "TransactionCanceledException"
    else:
        raise AssertionError("the transaction went through")


def run_together(*jobs: Any) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_counters_stay_exact_beside_cancelled_transactions(dynamodb: Any) -> None:
    table = "emulator-counters"
    dynamodb.create_table(**table_definition(table))
    add_one(dynamodb, table)
    for n in range(200):  # a table of some size, as a real one
        dynamodb.put_item(TableName=table, Item={**key(f"filler-{n}"), "x": {"S": "y" * 200}})

    def adder() -> None:
        for _ in range(ROUNDS):
            add_one(dynamodb, table)

    def canceller(worker: int) -> Any:
        def cancel_all() -> None:
            for n in range(ROUNDS):
                cancelled_transaction(dynamodb, table, worker * ROUNDS + n)

        return cancel_all

    run_together(*[adder] * THREADS, *(canceller(w) for w in range(THREADS)))
    counter = dynamodb.get_item(TableName=table, Key=key("counter"))["Item"]
    assert int(counter["n"]["N"]) == 1 + THREADS * ROUNDS
    scanned = dynamodb.scan(TableName=table, Select="COUNT")["Count"]
    assert scanned == 201  # no undone item left behind


def test_a_cancelled_transaction_puts_back_what_it_changed(dynamodb: Any) -> None:
    table = "emulator-undo"
    dynamodb.create_table(**table_definition(table))
    dynamodb.put_item(TableName=table, Item={**key("a"), "v": {"S": "old"}})
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key("a"), "v": {"S": "new"}}}},
                {"Delete": {"TableName": table, "Key": key("b")}},
                {"ConditionCheck": {
                    "TableName": table, "Key": key("missing"),
                    "ConditionExpression": "attribute_exists(pk)",
                }},
            ]
        )  # fmt: skip
    item = dynamodb.get_item(TableName=table, Key=key("a"))["Item"]
    assert item["v"] == {"S": "old"}
    assert "Item" not in dynamodb.get_item(TableName=table, Key=key("b"))


def test_sqs_long_polls_do_not_wait_for_dynamodb(dynamodb: Any, moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName="emulator-long-poll")["QueueUrl"]
    polls = [lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2) for _ in range(4)]
    done = threading.Event()

    def poll_then_signal() -> None:
        run_together(*polls)
        done.set()

    threading.Thread(target=poll_then_signal).start()
    table = "emulator-beside-sqs"
    dynamodb.create_table(**table_definition(table))
    dynamodb.put_item(TableName=table, Item=key("x"))  # served while the polls wait
    assert not done.is_set()
    assert done.wait(10)


def test_queries_keep_dynamodbs_order_on_number_keys(dynamodb: Any) -> None:
    table = "emulator-numbers"
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
    )
    for n in (10, 9, 100, -1, 2.5):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "p"}, "n": {"N": str(n)}})
    found = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "p"}},
    )
    assert [item["n"]["N"] for item in found["Items"]] == ["-1", "2.5", "9", "10", "100"]


def test_queue_counts_stay_exact_while_messages_are_sent(moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName="emulator-counts")["QueueUrl"]
    entries = [{"Id": str(n), "MessageBody": f"m{n}"} for n in range(10)]
    sqs.send_message_batch(QueueUrl=url, Entries=entries)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=4, VisibilityTimeout=60)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
             "ApproximateNumberOfMessagesNotVisible"]  # fmt: skip
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    assert counts == dict(zip(names, ["6", "1", "4"], strict=True))
