"""Usage counter items of DynamoDbJobStore's single table, and their read.

Items of pk `USAGE#<tenant>`, sk `<day>#<model>#<provider>#<shard>` (tenant, model and provider
URL-quoted, so a '#' in a name cannot make two keys collide), with the figures as number
attributes (`requests`, …, `fc_<error code>`, `lat_00`…`lat_39`) moved by ADD, and the key's parts
as plain attributes. The updates ride in the TransactWriteItems that ends the job (see
dynamodb_table.py), so a write whose condition fails counts nothing.

Each tenant x day x model x provider has SHARDS items, and a write picks one by its (first) job's
id: concurrent transactions on one item conflict (TransactionConflict, retried with backoff), so
one item per key would serialise every job a tenant finishes. Reads add the shards up.

A tenant's period is one Query of its partition, `sk BETWEEN '<from>' AND '<to>$'` ('$' sorts just
after the '#' that ends the day), which reads counter items and nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote

from shared.adapters.aws.names import PARTITION_KEY, SORT_KEY
from shared.adapters.store.dynamodb_calls import expression
from shared.adapters.store.dynamodb_items import Item, n, s
from shared.key_usage import usage_rows
from shared.models import Job
from shared.usage import (
    COUNTER_FIELDS,
    LATENCY_BUCKETS,
    UsageCounters,
    UsageKey,
)

PREFIX = "USAGE#"
CODE_PREFIX = "fc_"
LATENCY_ATTRS = tuple(f"lat_{k:02d}" for k in range(LATENCY_BUCKETS))
NAME_ATTRS = ("day", "model", "provider")
SHARDS = 8


def usage_partition(tenant: str) -> str:
    return PREFIX + quote(tenant, safe="")


def usage_item_key(key: UsageKey, shard: int) -> Item:
    names = f"{quote(key.model, safe='')}#{quote(key.provider, safe='')}"
    sort = f"{key.day.isoformat()}#{names}#{shard}"
    return {PARTITION_KEY: s(usage_partition(key.tenant)), SORT_KEY: s(sort)}


Counted = tuple[Job, UsageCounters]  # a job and what it adds (shared.transitions decides)


def added_by(counted: Iterable[Counted]) -> dict[UsageKey, UsageCounters]:
    """What these jobs add, summed per counter item."""
    added: dict[UsageKey, UsageCounters] = {}
    for job, counters in counted:
        for key, row in usage_rows(job, counters):  # the tenant's row, and its key's
            added[key] = added[key].plus(row) if key in added else row
    return added


def usage_updates(table: str, counted: Sequence[Counted]) -> list[Item]:
    """TransactWriteItems Updates adding what these jobs count: one per counter item (a
    transaction names an item once), all on the shard of the first job."""
    if not counted:
        return []
    shard = zlib.crc32(counted[0][0].id.encode()) % SHARDS
    return [_update(table, key, counters, shard) for key, counters in added_by(counted).items()]


def _update(table: str, key: UsageKey, counters: UsageCounters, shard: int) -> Item:
    sums = {name: getattr(counters, name) for name in COUNTER_FIELDS}
    sums |= {CODE_PREFIX + code: count for code, count in counters.failed_by_code.items()}
    sums |= {attr: count for attr, count in zip(LATENCY_ATTRS, counters.latency, strict=True)}
    sums = {name: value for name, value in sums.items() if value}
    names = {"tenant": key.tenant, "day": key.day.isoformat(), "model": key.model}
    names["provider"] = key.provider
    update = "SET " + ", ".join(f"#{name} = :{name}" for name in names)
    update += " ADD " + ", ".join(f"#{name} :{name}" for name in sums)
    values = {f":{name}": s(value) for name, value in names.items()}
    values |= {f":{name}": n(value) for name, value in sums.items()}
    params = expression(values, UpdateExpression=update)
    return {"Update": {"TableName": table, "Key": usage_item_key(key, shard), **params}}


def usage_query(table: str, tenant: str, start: date, end: date) -> dict[str, Any]:
    values = {
        ":pk": s(usage_partition(tenant)),
        ":start": s(start.isoformat()),
        ":end": s(end.isoformat() + "$"),
    }
    condition = f"#{PARTITION_KEY} = :pk AND #{SORT_KEY} BETWEEN :start AND :end"
    return {
        "TableName": table,
        "ConsistentRead": True,  # the figures of jobs that have just ended
        **expression(values, KeyConditionExpression=condition),
    }


def merged_shards(items: Iterable[Item]) -> list[UsageCounters]:
    """One UsageCounters per day x model x provider, its shards added up, in key order."""
    found: dict[tuple[str, ...], UsageCounters] = {}
    for item in items:
        counters = counters_of(item)
        key = tuple(item[name]["S"] for name in NAME_ATTRS)
        found[key] = found[key].plus(counters) if key in found else counters
    return [found[key] for key in sorted(found)]


def counters_of(item: Item) -> UsageCounters:
    def number(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    codes = {
        name.removeprefix(CODE_PREFIX): int(value["N"])
        for name, value in item.items()
        if name.startswith(CODE_PREFIX)
    }
    return UsageCounters(
        **{name: item[name]["S"] for name in NAME_ATTRS},
        **{name: number(name) for name in COUNTER_FIELDS},
        failed_by_code=codes,
        latency=[number(attr) for attr in LATENCY_ATTRS],
    )
