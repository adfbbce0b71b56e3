"""DynamoDbResultCache: completions as items of the single table, expired by DynamoDB's TTL.

Item: pk `CACHE#<key>`, sk `CACHE`, `value` (the Completion as JSON) and `expires_at` (epoch
seconds). DynamoDB deletes expired items late (often within a day or two, never at once), so a read
treats an item past its `expires_at` as a miss. TTLs are whole seconds counted from the current
whole second: an entry lives between `ttl_s - 1` and `ttl_s` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.models import Completion

log = logging.getLogger(__name__)

PREFIX = "CACHE#"
SORT_KEY = "CACHE"
VALUE = "value"
BATCH_GET_KEYS = 100  # BatchGetItem's limit
PARALLEL_CALLS = 16
UNPROCESSED_ATTEMPTS = 6
RETRY_BASE_S = 0.05

Clock = Callable[[], float]
Key = dict[str, dict[str, str]]


class DynamoDbResultCache:
    """Builds no client and opens no connection until its first call; `close` leaves the
    shared clients open."""

    def __init__(
        self, clients: AwsClients, table: str, *, timeout_s: float = 2.0, clock: Clock = time.time
    ) -> None:
        self._clients = clients
        self._table = table
        self._timeout_s = timeout_s  # per call: a slow cache must not hold up a submit for long
        self._clock = clock

    async def get(self, key: str) -> Completion | None:
        response = await self._call("get_item", TableName=self._table, Key=_key(key))
        item = response.get("Item")
        return self._parse(key, item) if item else None

    async def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        unique = list(dict.fromkeys(keys))
        chunks = iter(_chunks(unique, BATCH_GET_KEYS))
        items: list[dict[str, Any]] = []

        async def reader() -> None:
            for chunk in chunks:  # the readers share one iterator: each takes the next chunk
                items.extend(await self._batch_get([_key(k) for k in chunk]))

        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(min(PARALLEL_CALLS, math.ceil(len(unique) / BATCH_GET_KEYS))):
                    tasks.create_task(reader())
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        hits = {_cache_key(item): item for item in items}
        parsed = {key: self._parse(key, item) for key, item in hits.items()}
        return {key: value for key, value in parsed.items() if value is not None}

    async def set(self, key: str, value: Completion, ttl_s: int) -> None:
        if ttl_s <= 0:  # a zero TTL means "do not keep"
            await self.delete(key)
            return
        item = {
            **_key(key),
            VALUE: {"S": value.model_dump_json()},
            names.TTL_ATTRIBUTE: {"N": str(int(self._clock()) + ttl_s)},
        }
        await self._call("put_item", TableName=self._table, Item=item)

    async def delete(self, key: str) -> None:
        await self._call("delete_item", TableName=self._table, Key=_key(key))

    async def ping(self) -> bool:
        try:
            await self._call("get_item", TableName=self._table, Key=_key("ping"))
        except Exception as exc:  # any failure means "not ready"; /readyz reports it
            log.warning("DynamoDB cache table %s does not answer: %r", self._table, exc)
            return False
        return True

    async def close(self) -> None:
        """Nothing to release: the clients belong to AwsClients."""

    async def _batch_get(self, keys: list[Key]) -> list[dict[str, Any]]:
        """The items of up to 100 keys, asking again for the keys DynamoDB left unprocessed."""
        items: list[dict[str, Any]] = []
        for attempt in range(UNPROCESSED_ATTEMPTS):
            if attempt:
                await asyncio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
            response = await self._call(
                "batch_get_item", RequestItems={self._table: {"Keys": keys}}
            )
            items += response.get("Responses", {}).get(self._table, [])
            keys = response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if not keys:
                return items
        log.warning("DynamoDB left %d cache keys unprocessed; counting them as misses", len(keys))
        return items

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        ddb = await self._clients.client("dynamodb")
        async with asyncio.timeout(self._timeout_s):
            response: dict[str, Any] = await getattr(ddb, operation)(**params)
        return response

    def _parse(self, key: str, item: Mapping[str, Any]) -> Completion | None:
        expires_at = item.get(names.TTL_ATTRIBUTE, {}).get("N")
        if expires_at is None or float(expires_at) <= self._clock():
            return None  # expired, not yet deleted by DynamoDB
        try:
            return Completion.model_validate_json(item[VALUE]["S"])
        except (KeyError, ValidationError):  # written by another version: a miss
            log.warning("ignoring unreadable cache entry %s", key)
            return None


def _key(key: str) -> Key:
    return {names.PARTITION_KEY: {"S": PREFIX + key}, names.SORT_KEY: {"S": SORT_KEY}}


def _cache_key(item: Mapping[str, Any]) -> str:
    return str(item[names.PARTITION_KEY]["S"]).removeprefix(PREFIX)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
