"""DynamoDbResultCache on moto's server: item layout, late TTL deletion, big get_many calls."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.cache.dynamodb import DynamoDbResultCache
from shared.models import Completion, Usage

pytestmark = pytest.mark.integration


def completion(content: str = "hello") -> Completion:
    return Completion(
        content=content, provider="fake", model="m", usage=Usage(input_tokens=1, output_tokens=2)
    )


async def batch_get_calls(clients: AwsClients) -> list[dict[str, Any]]:
    """The parameters of every BatchGetItem call made from now on."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    ddb = await clients.client("dynamodb")
    ddb.meta.events.register("before-parameter-build.dynamodb.BatchGetItem", record)
    return seen


async def test_an_item_is_the_completion_json_with_a_ttl(
    aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    cache = DynamoDbResultCache(aws_clients, aws_layout.table, clock=lambda: 1_000.7)
    await cache.set("k", completion(), ttl_s=300)
    ddb = await aws_clients.client("dynamodb")
    key = {"pk": {"S": "CACHE#k"}, "sk": {"S": "CACHE"}}
    item = (await ddb.get_item(TableName=aws_layout.table, Key=key))["Item"]
    assert Completion.model_validate_json(item["value"]["S"]) == completion()
    assert item[names.TTL_ATTRIBUTE] == {"N": "1300"}


async def test_an_expired_item_is_a_miss_while_dynamodb_still_keeps_it(
    aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    written_at = time.time() - 120
    await DynamoDbResultCache(aws_clients, aws_layout.table, clock=lambda: written_at).set(
        "old", completion(), ttl_s=60
    )
    cache = DynamoDbResultCache(aws_clients, aws_layout.table)
    assert await cache.get("old") is None
    assert await cache.get_many(["old"]) == {}
    ddb = await aws_clients.client("dynamodb")
    key = {"pk": {"S": "CACHE#old"}, "sk": {"S": "CACHE"}}
    assert "Item" in await ddb.get_item(TableName=aws_layout.table, Key=key)


async def test_get_many_reads_over_100_keys_in_calls_of_100(
    aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    cache = DynamoDbResultCache(aws_clients, aws_layout.table)
    keys = [f"k{n}" for n in range(250)]
    for key in keys[::2]:
        await cache.set(key, completion(key), ttl_s=60)
    calls = await batch_get_calls(aws_clients)
    hits = await cache.get_many([*keys, *keys[:10]])  # repeats are asked for once
    assert hits == {key: completion(key) for key in keys[::2]}
    sizes = [len(c["RequestItems"][aws_layout.table]["Keys"]) for c in calls]
    assert sorted(sizes) == [50, 100, 100]


async def test_get_many_asks_again_for_unprocessed_keys(
    aws_clients: AwsClients, aws_layout: AwsLayout
) -> None:
    """DynamoDB answers at most 16 MB a call and leaves the rest as UnprocessedKeys."""
    cache = DynamoDbResultCache(aws_clients, aws_layout.table, timeout_s=30)
    keys = [f"big{n}" for n in range(60)]
    for n, key in enumerate(keys):
        await cache.set(key, completion(f"{n:03}" + "x" * 300_000), ttl_s=60)  # 60 x 300 KB
    calls = await batch_get_calls(aws_clients)
    hits = await cache.get_many(keys)
    assert sorted(hits) == sorted(keys)
    assert all(hits[key].content.startswith(f"{n:03}") for n, key in enumerate(keys))
    sizes = [len(c["RequestItems"][aws_layout.table]["Keys"]) for c in calls]
    assert sizes[0] == 60 and len(sizes) > 1 and sum(sizes[1:]) < 60


async def test_an_unreadable_item_is_a_miss(aws_clients: AwsClients, aws_layout: AwsLayout) -> None:
    ddb = await aws_clients.client("dynamodb")
    item = {
        "pk": {"S": "CACHE#k"},
        "sk": {"S": "CACHE"},
        "value": {"S": "not json"},
        names.TTL_ATTRIBUTE: {"N": str(int(time.time()) + 60)},
    }
    await ddb.put_item(TableName=aws_layout.table, Item=item)
    cache = DynamoDbResultCache(aws_clients, aws_layout.table)
    assert await cache.get("k") is None
    assert await cache.get_many(["k"]) == {}
