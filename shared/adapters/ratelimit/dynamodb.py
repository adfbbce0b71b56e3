"""DynamoDbRateWindow: a per-key request budget (a tenant, a client address) that every Lambda
container shares.

A sliding window estimated from two fixed windows (the estimate Cloudflare uses): the requests of
the current window plus those of the previous one, weighted by how much of it the sliding window
still covers. That avoids a fixed window's double burst at the boundary. Each request is one
conditional UpdateItem (ADD count 1 only while count < the room the previous window leaves); the
previous window is closed, so a container reads its count once and keeps it.

Items in the single table: pk `RATE#<key>`, sk `<window start, epoch seconds>`, `count`, and a
TTL one window after the window ends (it serves as the previous window until then).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients

PREFIX = "RATE#"
COUNT = "count"
TTL_MARGIN_S = 60
CONDITION_FAILED = "ConditionalCheckFailedException"
PREVIOUS_KEPT = 10_000  # previous windows' counts a container remembers before it sweeps

Clock = Callable[[], float]


class DynamoDbRateWindow:
    """Raises on DynamoDB failures and timeouts; TenantRateLimiter then lets requests through."""

    def __init__(
        self, clients: AwsClients, table: str, *, timeout_s: float = 1.0, clock: Clock = time.time
    ) -> None:
        self._clients = clients
        self._table = table
        self._timeout_s = timeout_s
        self._clock = clock
        self._previous: dict[str, tuple[int, int]] = {}  # key -> (window start, final count)

    async def hit(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        now = self._clock()
        start = int(now // window_s) * window_s
        elapsed = now - start
        await self._clients.client("dynamodb")  # a cold start opens it: not within the deadline
        async with asyncio.timeout(self._timeout_s):
            previous = await self._previous_count(key, start - window_s)
            room = limit - math.ceil(previous * (window_s - elapsed) / window_s)
            if room > 0:
                refused_at = await self._add(key, start, room, window_s)
                if refused_at is None:
                    return True, 0
                current = refused_at
            else:
                current = await self._count(key, start)
        return False, retry_after_s(limit, window_s, elapsed, previous, current)

    async def test(self, key: str, limit: int, window_s: int) -> tuple[bool, int]:
        """The estimate `hit` makes, from one read of the current window (the previous one is
        usually known already), with nothing written."""
        now = self._clock()
        start = int(now // window_s) * window_s
        elapsed = now - start
        await self._clients.client("dynamodb")
        async with asyncio.timeout(self._timeout_s):
            previous = await self._previous_count(key, start - window_s)
            current = await self._count(key, start)
        room = limit - math.ceil(previous * (window_s - elapsed) / window_s)
        if current < room:
            return True, 0
        return False, retry_after_s(limit, window_s, elapsed, previous, current)

    async def _add(self, key: str, start: int, room: int, window_s: int) -> int | None:
        """Count one request unless the window already holds `room`; None when counted, else
        the window's count."""
        ddb = await self._clients.client("dynamodb")
        try:
            await ddb.update_item(
                TableName=self._table,
                Key=_key(key, start),
                UpdateExpression="ADD #count :one SET #ttl = :ttl",
                ConditionExpression="attribute_not_exists(#count) OR #count < :room",
                ExpressionAttributeNames={"#count": COUNT, "#ttl": names.TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":room": {"N": str(room)},
                    ":ttl": {"N": str(start + 2 * window_s + TTL_MARGIN_S)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                raise
            old: Any = exc.response.get("Item")  # there with ReturnValuesOnConditionCheckFailure
            return _count_of(old, default=room)
        return None

    async def _previous_count(self, key: str, start: int) -> int:
        cached = self._previous.get(key)
        if cached is None or cached[0] != start:
            cached = (start, await self._count(key, start))
            if len(self._previous) >= PREVIOUS_KEPT:  # many keys (client addresses): drop stale
                self._previous = {k: v for k, v in self._previous.items() if v[0] >= start}
            self._previous[key] = cached
        return cached[1]

    async def _count(self, key: str, start: int) -> int:
        ddb = await self._clients.client("dynamodb")
        response = await ddb.get_item(
            TableName=self._table, Key=_key(key, start), ConsistentRead=True
        )
        return _count_of(response.get("Item"), default=0)


def retry_after_s(limit: int, window_s: int, elapsed: float, previous: int, current: int) -> int:
    """Whole seconds until the estimate leaves room for one more request, if none comes first."""
    free = limit - current - 1  # how much of the previous window's weight may remain
    if free >= 0 and previous > 0:  # room later in this window, as its weight fades
        return max(1, math.ceil(window_s * (1 - free / previous) - elapsed))
    # in the next window, where this window's `current` is the fading weight
    fade = window_s * (1 - (limit - 1) / current) if current > 0 else 0
    return max(1, math.ceil(window_s - elapsed + fade))


def _key(key: str, start: int) -> dict[str, dict[str, str]]:
    return {names.PARTITION_KEY: {"S": PREFIX + key}, names.SORT_KEY: {"S": str(start)}}


def _count_of(item: dict[str, Any] | None, *, default: int) -> int:
    if not item or COUNT not in item:
        return default
    return int(item[COUNT]["N"])
