"""DynamoDbProviderQuota: provider quotas that every Lambda container shares, in the one table.

Calls and tokens are counted in per-bucket counter items, a bucket being a twelfth of the window
(about 5 s): pk `QUOTA#<provider>`, sk the bucket's number (zero-padded, so buckets sort in
time), attributes `calls` and `tokens`, and a TTL once the bucket has left every window. A
window of calls is read as the current bucket and the twelve before it, which cover any window
whatever its alignment, so no window ever holds more than the limit (a bucket is freed whole,
so a slot may come back up to a bucket later than in an exact moving window).

Taking a slot is one consistent Query (the buckets and the pause) and one TransactWriteItems: ADD
1 to the current bucket only while it holds less than the room the earlier buckets leave, and
only while the previous bucket still holds what the Query read (a container whose clock says
"previous bucket" may still be writing there at a bucket's turn). A cancelled transaction is read
again. The pause after a 429 is the item with sk `paused` (`until_ms`), which only ever grows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.quotas import QUOTA_WINDOW_S, QuotaLimits, limits_of

PREFIX = "QUOTA#"
PAUSED = "paused"  # sorts after every bucket number
BUCKETS = 12  # per window; a window of calls is read as BUCKETS + 1 buckets
TRIES = 5  # transactions cancelled by other containers' slots before answering "wait a little"
TTL_MARGIN_S = 60
CANCELLED = "TransactionCanceledException"
CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass
class _Seen:
    """A provider's buckets (by number: calls, tokens) and pause, as one Query read them."""

    calls: dict[int, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    paused_until_ms: int = 0


class DynamoDbProviderQuota:
    def __init__(
        self,
        clients: AwsClients,
        table: str,
        limits: Mapping[str, QuotaLimits],
        *,
        window_s: float = QUOTA_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients, self._table, self._limits = clients, table, dict(limits)
        self._bucket_ms = math.ceil(window_s * 1000 / BUCKETS)
        self._clock = clock

    async def acquire(self, provider: str) -> float:
        limits = limits_of(self._limits, provider)
        for _ in range(TRIES):
            now_ms = self._now_ms()
            bucket = now_ms // self._bucket_ms
            seen = await self._read(provider, bucket)
            wait = self._wait_ms(seen, limits, now_ms, bucket)
            if wait > 0 or limits.rpm <= 0:
                return wait / 1000
            earlier = sum(n for b, n in seen.calls.items() if b != bucket)
            if await self._take(provider, bucket, limits.rpm - earlier, seen.calls.get(bucket - 1)):
                return 0.0
        return self._bucket_ms / 1000 / 10  # crowded: others took the room meanwhile

    async def wait_s(self, provider: str) -> float:
        now_ms = self._now_ms()
        bucket = now_ms // self._bucket_ms
        seen = await self._read(provider, bucket)
        return self._wait_ms(seen, limits_of(self._limits, provider), now_ms, bucket) / 1000

    async def spend_tokens(self, provider: str, tokens: int) -> None:
        if tokens <= 0 or limits_of(self._limits, provider).tpm <= 0:
            return
        bucket = self._now_ms() // self._bucket_ms
        ddb = await self._clients.client("dynamodb")
        await ddb.update_item(
            TableName=self._table,
            Key=_key(provider, _sk(bucket)),
            UpdateExpression="ADD #tokens :n SET #ttl = :ttl",
            ExpressionAttributeNames={"#tokens": "tokens", "#ttl": names.TTL_ATTRIBUTE},
            ExpressionAttributeValues={":n": {"N": str(tokens)}, ":ttl": self._ttl(bucket)},
        )

    async def pause(self, provider: str, seconds: float) -> None:
        until_ms = self._now_ms() + max(round(seconds * 1000), 1)
        ddb = await self._clients.client("dynamodb")
        try:
            await ddb.update_item(
                TableName=self._table,
                Key=_key(provider, PAUSED),
                UpdateExpression="SET #until = :until, #ttl = :ttl",
                ConditionExpression="attribute_not_exists(#until) OR #until < :until",
                ExpressionAttributeNames={"#until": "until_ms", "#ttl": names.TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":until": {"N": str(until_ms)},
                    ":ttl": {"N": str(until_ms // 1000 + TTL_MARGIN_S)},
                },
            )
        except ClientError as exc:
            if _code(exc) != CONDITION_FAILED:  # a longer pause is already set
                raise

    async def close(self) -> None:
        return None  # the AWS clients are the composition root's

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _read(self, provider: str, bucket: int) -> _Seen:
        ddb = await self._clients.client("dynamodb")
        response = await ddb.query(
            TableName=self._table,
            KeyConditionExpression="#pk = :pk AND #sk >= :first",
            ExpressionAttributeNames={"#pk": names.PARTITION_KEY, "#sk": names.SORT_KEY},
            ExpressionAttributeValues={
                ":pk": {"S": PREFIX + provider},
                ":first": {"S": _sk(bucket - BUCKETS)},
            },
            ConsistentRead=True,
        )
        seen = _Seen()
        for item in response.get("Items", []):
            sk = item[names.SORT_KEY]["S"]
            if sk == PAUSED:
                seen.paused_until_ms = _number(item, "until_ms")
            elif sk.isdigit():
                seen.calls[int(sk)] = _number(item, "calls")
                seen.tokens[int(sk)] = _number(item, "tokens")
        return seen

    def _wait_ms(self, seen: _Seen, limits: QuotaLimits, now_ms: int, bucket: int) -> int:
        paused = max(seen.paused_until_ms - now_ms, 0)
        calls = self._freed_at(seen.calls, limits.rpm, bucket)
        tokens = self._freed_at(seen.tokens, limits.tpm, bucket)
        return max(paused, calls - now_ms, tokens - now_ms, 0)

    def _freed_at(self, counts: dict[int, int], limit: int, bucket: int) -> int:
        """When (ms) the buckets read as one window next add up to less than `limit`: the start
        of the first bucket whose window no longer reads the buckets that must go."""
        if limit <= 0 or sum(counts.values()) < limit:
            return 0
        later = bucket + 1
        while sum(n for b, n in counts.items() if b >= later - BUCKETS) >= limit:
            later += 1
        return later * self._bucket_ms

    async def _take(self, provider: str, bucket: int, room: int, previous: int | None) -> bool:
        """One call counted in `bucket`, unless the bucket holds `room` calls already or the
        previous bucket has changed since it was read; True when counted."""
        check = (
            {"ConditionExpression": "attribute_not_exists(#calls)"}
            if not previous
            else {
                "ConditionExpression": "#calls = :seen",
                "ExpressionAttributeValues": {":seen": {"N": str(previous)}},
            }
        )
        ddb = await self._clients.client("dynamodb")
        try:
            await ddb.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": _key(provider, _sk(bucket - 1)),
                            "ExpressionAttributeNames": {"#calls": "calls"},
                            **check,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _key(provider, _sk(bucket)),
                            "UpdateExpression": "ADD #calls :one SET #ttl = :ttl",
                            "ConditionExpression": "attribute_not_exists(#calls) OR #calls < :room",
                            "ExpressionAttributeNames": {
                                "#calls": "calls",
                                "#ttl": names.TTL_ATTRIBUTE,
                            },
                            "ExpressionAttributeValues": {
                                ":one": {"N": "1"},
                                ":room": {"N": str(room)},
                                ":ttl": self._ttl(bucket),
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            if _code(exc) != CANCELLED:
                raise
            return False
        return True

    def _ttl(self, bucket: int) -> dict[str, str]:
        """Once no window reads the bucket any more (DynamoDB deletes expired items late)."""
        gone_ms = (bucket + BUCKETS + 2) * self._bucket_ms
        return {"N": str(gone_ms // 1000 + TTL_MARGIN_S)}


def _sk(bucket: int) -> str:
    return f"{max(bucket, 0):015d}"


def _key(provider: str, sk: str) -> dict[str, dict[str, str]]:
    return {names.PARTITION_KEY: {"S": PREFIX + provider}, names.SORT_KEY: {"S": sk}}


def _number(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
