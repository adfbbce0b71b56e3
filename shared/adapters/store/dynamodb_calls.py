"""DynamoDB calls for DynamoDbJobStore, each with its failure modes handled once: conditional
writes and transactions that report a failed condition instead of raising, batch writes that
retry what DynamoDB left unprocessed, paged queries, and a merge of sorted shard queries.

Conflicts with a concurrent transaction (TransactionConflict) are retried here with jittered
backoff; botocore's own retries cover throttling and 5xx.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from shared.adapters.store.dynamodb_items import Item, is_live

T = TypeVar("T")

CONDITION_FAILED = "ConditionalCheckFailed"
RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
MAX_RETRIES = 8
BATCH_WRITE_SIZE = 25  # DynamoDB's limit per BatchWriteItem
BATCH_GET_SIZE = 100  # DynamoDB's limit per BatchGetItem
PARALLEL_CALLS = 8


def expression(values: Item | None = None, **parts: str) -> dict[str, Any]:
    """Expression parameters: `parts` by parameter name (ConditionExpression=…), in which each
    `#attr` placeholder names the attribute `attr` (so reserved words like `status` are safe)."""
    found = sorted({name for text in parts.values() for name in re.findall(r"#(\w+)", text)})
    params: dict[str, Any] = dict(parts)
    if found:
        params["ExpressionAttributeNames"] = {f"#{name}": name for name in found}
    if values:
        params["ExpressionAttributeValues"] = values
    return params


def condition_failed(reason: dict[str, Any]) -> bool:
    return reason.get("Code") == CONDITION_FAILED


async def backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


async def conditional(call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any] | None:
    """The response of a conditional write, or None when its condition did not hold."""
    for attempt in range(MAX_RETRIES):
        try:
            return await call()
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return None
            if _code(error) != "TransactionConflictException" or attempt == MAX_RETRIES - 1:
                raise
        await backoff(attempt)
    raise AssertionError("unreachable")


async def transact(ddb: Any, items: list[Item]) -> list[dict[str, Any]] | None:
    """Write every item or none. None when written; when a condition failed, each item's
    cancellation reason in order (Code "None" for the items that were fine)."""
    for attempt in range(MAX_RETRIES):
        try:
            await ddb.transact_write_items(TransactItems=items)
            return None
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            reasons = [dict(reason) for reason in error.response.get("CancellationReasons", [])]
            if any(condition_failed(reason) for reason in reasons):
                return reasons
            codes = {reason.get("Code") for reason in reasons}
            if not codes & RETRYABLE_REASONS or attempt == MAX_RETRIES - 1:
                raise
        await backoff(attempt)
    raise AssertionError("unreachable")


async def bounded(calls: Iterable[Awaitable[T]], limit: int = PARALLEL_CALLS) -> list[T]:
    """Await `calls` with at most `limit` running at once; the first failure cancels the rest."""
    semaphore = asyncio.Semaphore(limit)

    async def run(call: Awaitable[T]) -> T:
        async with semaphore:
            return await call

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run(call)) for call in calls]
    return [task.result() for task in tasks]


async def batch_write(ddb: Any, table: str, requests: list[Item]) -> None:
    """PutRequests/DeleteRequests in calls of 25, several at once, each retried until DynamoDB
    has processed all of it."""
    chunks = [requests[i : i + BATCH_WRITE_SIZE] for i in range(0, len(requests), BATCH_WRITE_SIZE)]
    await bounded(_write_chunk(ddb, table, chunk) for chunk in chunks)


async def _write_chunk(ddb: Any, table: str, chunk: list[Item]) -> None:
    for attempt in range(MAX_RETRIES * 2):
        response = await ddb.batch_write_item(RequestItems={table: chunk})
        chunk = response.get("UnprocessedItems", {}).get(table, [])
        if not chunk:
            return
        await backoff(attempt)
    raise RuntimeError(f"DynamoDB left {len(chunk)} batch writes unprocessed")


async def batch_get(ddb: Any, table: str, keys: list[Item]) -> list[Item]:
    """The live items of `keys`, in the order of `keys`, read consistently (BatchGetItem, 100 keys
    a call, retrying what DynamoDB left unprocessed); a key with no live item is left out."""
    chunks = [keys[i : i + BATCH_GET_SIZE] for i in range(0, len(keys), BATCH_GET_SIZE)]
    found: dict[tuple[str, ...], Item] = {}
    for items in await bounded(_get_chunk(ddb, table, chunk) for chunk in chunks):
        found.update((_identity(item, keys[0]), item) for item in items)
    wanted = (found.get(_identity(key, key)) for key in keys)
    return [item for item in wanted if item is not None and is_live(item)]


def _identity(item: Item, key: Item) -> tuple[str, ...]:
    return tuple(str(item[name]) for name in sorted(key))


async def _get_chunk(ddb: Any, table: str, chunk: list[Item]) -> list[Item]:
    items: list[Item] = []
    request: dict[str, Any] = {table: {"Keys": chunk, "ConsistentRead": True}}
    for attempt in range(MAX_RETRIES * 2):
        response = await ddb.batch_get_item(RequestItems=request)
        items += response.get("Responses", {}).get(table, [])
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return items
        await backoff(attempt)
    raise RuntimeError(f"DynamoDB left {len(request[table]['Keys'])} batch reads unprocessed")


async def query_items(ddb: Any, params: dict[str, Any]) -> AsyncGenerator[Item, None]:
    """Every live item a Query finds, page after page."""
    params = dict(params)
    while True:
        page = await ddb.query(**params)
        for item in page.get("Items", []):
            if is_live(item):
                yield item
        if "LastEvaluatedKey" not in page:
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def count(ddb: Any, params: dict[str, Any]) -> int:
    """How many items a Query (with Select=COUNT) matches, over every page."""
    params, total = {**params, "Select": "COUNT"}, 0
    while True:
        page = await ddb.query(**params)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def merged(
    sources: list[AsyncGenerator[Item, None]], key: Callable[[Item], str], limit: int
) -> list[Item]:
    """The first `limit` items of several sorted sources in `key` order, reading each source
    only as far as needed."""
    try:
        heads = await asyncio.gather(*(anext(source, None) for source in sources))
        heap = [(key(item), i, item) for i, item in enumerate(heads) if item is not None]
        heapq.heapify(heap)
        out: list[Item] = []
        while heap and len(out) < limit:
            _, i, item = heapq.heappop(heap)
            out.append(item)
            following = await anext(sources[i], None)
            if following is not None:
                heapq.heappush(heap, (key(following), i, following))
        return out
    finally:
        for source in sources:
            await source.aclose()
