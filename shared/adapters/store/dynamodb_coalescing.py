"""Coalescing records of DynamoDbJobStore (shared/coalescing.py says the rules).

- A tenant's cache key in flight: the item `COALESCE#<tenant>#<cache key>` naming its `holder`,
  taken by a conditional Put (free, or still held by the job it replaces) and deleted only by
  its holder.
- The jobs waiting for a job: items `FOLLOWERS#<leader id>`, sort key the follower's id, read by
  one consistent Query of that partition.

Both carry a TTL (RECORD_TTL) so that records a crash left behind go by themselves; a key older
than that counts as free. No job waits that long: JOB_RETRY_BUDGET_S ends it first.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import quote

from shared.adapters.store.dynamodb_calls import batch_write, conditional, expression, query_items
from shared.adapters.store.dynamodb_items import PK, SK, TTL, Item, n, s
from shared.adapters.store.dynamodb_table import ItemTable

RECORD_TTL = timedelta(days=7)
FREE = f"attribute_not_exists(#{PK}) OR #{TTL} < :now"


def key_of(tenant: str, cache_key: str) -> Item:
    return {PK: s(f"COALESCE#{quote(tenant, safe='')}#{cache_key}"), SK: s("COALESCE")}


def _expires() -> dict[str, str]:
    return n(int(time.time() + RECORD_TTL.total_seconds()))


async def key_holder(db: ItemTable, tenant: str, cache_key: str) -> str | None:
    held = await db.get(key_of(tenant, cache_key))
    return str(held["holder"]["S"]) if held is not None else None


async def take_key(
    db: ItemTable, tenant: str, cache_key: str, job_id: str, replacing: str | None
) -> bool:
    item = {**key_of(tenant, cache_key), "holder": s(job_id), TTL: _expires()}
    if replacing is None:
        params = expression({":now": n(int(time.time()))}, ConditionExpression=FREE)
    else:
        params = expression({":old": s(replacing)}, ConditionExpression="#holder = :old")
    put = {"TableName": db.table, "Item": item, **params}
    return await conditional(lambda: db.ddb.put_item(**put)) is not None


async def release_key(db: ItemTable, tenant: str, cache_key: str, job_id: str) -> None:
    params = expression({":job": s(job_id)}, ConditionExpression="#holder = :job")
    key = key_of(tenant, cache_key)
    await conditional(lambda: db.ddb.delete_item(TableName=db.table, Key=key, **params))


def _followers_of(leader_id: str) -> dict[str, str]:
    return s(f"FOLLOWERS#{leader_id}")


async def add_follower(db: ItemTable, leader_id: str, follower_id: str) -> None:
    item = {PK: _followers_of(leader_id), SK: s(follower_id), TTL: _expires()}
    await db.ddb.put_item(TableName=db.table, Item=item)


async def followers(db: ItemTable, leader_id: str) -> list[str]:
    values = {":pk": _followers_of(leader_id)}
    params = {
        "TableName": db.table,
        "ConsistentRead": True,
        **expression(values, KeyConditionExpression=f"#{PK} = :pk"),
    }
    return [str(item[SK]["S"]) async for item in query_items(db.ddb, params)]


async def drop_followers(db: ItemTable, leader_id: str) -> None:
    keys = [{PK: _followers_of(leader_id), SK: s(f)} for f in await followers(db, leader_id)]
    if keys:
        await batch_write(db.ddb, db.table, [{"DeleteRequest": {"Key": key}} for key in keys])
