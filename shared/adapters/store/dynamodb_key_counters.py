"""Each API key's counters in DynamoDbJobStore's table (the KeyCounters port).

Items of pk `KEY#<key id>` (URL-quoted):
- sk `MONTH#<YYYY-MM>`: `requests`, `tokens`, and `alerted_<kind>` once that budget's 80% event
  went out;
- sk `IN_FLIGHT`: `jobs`;
- sk `MINUTE#<YYYY-MM-DDTHH:MM>`: `tokens` of jobs that ended in that minute, with a TTL an hour
  on (reads hide it after that; DynamoDB deletes it later).

A reservation is one UpdateItem that ADDs with a ConditionExpression (`attribute_not_exists(x) OR
x <= :room`, where room is the limit less what is asked): DynamoDB applies the condition and the
ADD atomically on the item, so of concurrent reservations from any number of processes, exactly
as many as fit succeed. A job's own changes move its key's counters by Updates that ride in the
TransactWriteItems of the change (`key_updates`, called by dynamodb_table.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.adapters.store.dynamodb_calls import conditional, expression
from shared.adapters.store.dynamodb_items import PK, SK, TTL, Item, n, s
from shared.key_usage import KeyDeltas, KeyMonth

if TYPE_CHECKING:
    from shared.adapters.store.dynamodb_table import ItemTable

IN_FLIGHT = "IN_FLIGHT"
MINUTE_KEPT = timedelta(hours=1)
ALERTED = "alerted_"


def _partition(key_id: str) -> dict[str, str]:
    return s("KEY#" + quote(key_id, safe=""))


def month_key(key_id: str, month: str) -> Item:
    return {PK: _partition(key_id), SK: s(f"MONTH#{month}")}


def flight_key(key_id: str) -> Item:
    return {PK: _partition(key_id), SK: s(IN_FLIGHT)}


def minute_key(key_id: str, minute: str) -> Item:
    return {PK: _partition(key_id), SK: s(f"MINUTE#{minute}")}


def _room(name: str, asked: int, limit: int | None, values: Item) -> str | None:
    """The condition that `name` + `asked` stays within `limit` (None: no condition)."""
    if limit is None:
        return None
    values[f":{name}_room"] = n(limit - asked)
    return f"(attribute_not_exists(#{name}) OR #{name} <= :{name}_room)"


async def reserve(
    db: ItemTable,
    key_id: str,
    month: str,
    requests: int,
    tokens: int,
    max_requests: int | None,
    max_tokens: int | None,
) -> KeyMonth | None:
    if (max_requests is not None and requests > max_requests) or (
        max_tokens is not None and tokens > max_tokens
    ):
        return None  # could never fit: no write
    values: Item = {":requests": n(requests), ":tokens": n(tokens)}
    conditions = [
        c
        for c in (
            _room("requests", requests, max_requests, values),
            _room("tokens", tokens, max_tokens, values),
        )
        if c is not None
    ]
    parts = {"UpdateExpression": "ADD #requests :requests, #tokens :tokens"}
    if conditions:
        parts["ConditionExpression"] = " AND ".join(conditions)
    params = expression(values, **parts)
    response = await conditional(
        lambda: db.ddb.update_item(
            TableName=db.table, Key=month_key(key_id, month), ReturnValues="ALL_NEW", **params
        )
    )
    return key_month_of(response["Attributes"]) if response is not None else None


async def unreserve(db: ItemTable, key_id: str, month: str, requests: int, tokens: int) -> None:
    params = expression(
        {":requests": n(-requests), ":tokens": n(-tokens)},
        UpdateExpression="ADD #requests :requests, #tokens :tokens",
    )
    key = month_key(key_id, month)
    await conditional(lambda: db.ddb.update_item(TableName=db.table, Key=key, **params))


async def key_month(db: ItemTable, key_id: str, month: str) -> KeyMonth:
    return key_month_of(await db.get(month_key(key_id, month)))


async def mark_alerted(db: ItemTable, key_id: str, month: str, kind: str) -> bool:
    name = ALERTED + "".join(c for c in kind if c.isalnum() or c == "_")
    params = expression(
        {":yes": n(1)},
        UpdateExpression=f"SET #{name} = :yes",
        ConditionExpression=f"attribute_not_exists(#{name})",
    )
    response = await conditional(
        lambda: db.ddb.update_item(TableName=db.table, Key=month_key(key_id, month), **params)
    )
    return response is not None


async def enter(db: ItemTable, key_id: str, jobs: int, ceiling: int) -> bool:
    if jobs > ceiling:
        return False
    params = expression(
        {":jobs": n(jobs), ":room": n(ceiling - jobs)},
        UpdateExpression="ADD #jobs :jobs",
        ConditionExpression="attribute_not_exists(#jobs) OR #jobs <= :room",
    )
    response = await conditional(
        lambda: db.ddb.update_item(TableName=db.table, Key=flight_key(key_id), **params)
    )
    return response is not None


async def in_flight(db: ItemTable, key_id: str) -> int:
    item = await db.get(flight_key(key_id))
    return int(item["jobs"]["N"]) if item is not None and "jobs" in item else 0


async def minute_tokens(db: ItemTable, key_id: str, minute: str) -> int:
    item = await db.get(minute_key(key_id, minute))
    return int(item["tokens"]["N"]) if item is not None and "tokens" in item else 0


def key_updates(table: str, deltas: KeyDeltas) -> list[Item]:
    """TransactWriteItems Updates that move one key's counters as `deltas` says."""
    key_id, updates = deltas.key_id, []
    for month, tokens in deltas.months.items():
        updates.append(_add(table, month_key(key_id, month), {"tokens": tokens}))
    if deltas.in_flight:
        updates.append(_add(table, flight_key(key_id), {"jobs": deltas.in_flight}))
    for minute, tokens in deltas.minutes.items():
        expires = int((datetime.fromisoformat(minute + "+00:00") + MINUTE_KEPT).timestamp())
        updates.append(_add(table, minute_key(key_id, minute), {"tokens": tokens}, expires))
    return updates


def key_item_names(deltas: KeyDeltas | None) -> set[tuple[str, ...]]:
    """The items `key_updates` names (a transaction may name each item once)."""
    if deltas is None:
        return set()
    names = {("month", deltas.key_id, month) for month in deltas.months}
    names |= {("minute", deltas.key_id, minute) for minute in deltas.minutes}
    return names | ({("flight", deltas.key_id)} if deltas.in_flight else set())


def _add(table: str, key: Item, sums: dict[str, int], expires: int | None = None) -> Item:
    values: Item = {f":{name}": n(value) for name, value in sums.items()}
    update = "ADD " + ", ".join(f"#{name} :{name}" for name in sums)
    if expires is not None:
        update = f"SET #{TTL} = :expires " + update
        values[":expires"] = n(expires)
    return {
        "Update": {"TableName": table, "Key": key, **expression(values, UpdateExpression=update)}
    }


async def move(db: ItemTable, deltas: KeyDeltas) -> None:
    """Apply `deltas` outside a job's change: each item's update on its own (a refund)."""
    for update in key_updates(db.table, deltas):
        await _update(db, update["Update"])


async def _update(db: ItemTable, params: dict[str, Any]) -> None:
    await conditional(lambda: db.ddb.update_item(**params))


def key_month_of(item: Item | None) -> KeyMonth:
    if item is None:
        return KeyMonth()

    def number(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    alerted = frozenset(name.removeprefix(ALERTED) for name in item if name.startswith(ALERTED))
    return KeyMonth(number("requests"), number("tokens"), alerted)
