"""Run-time API keys in DynamoDB's single table: DynamoDbApiKeys, the KeyStore half of
DynamoDbJobStore (a mixin over its ItemTable).

Items (no secret anywhere: hashes are keyed HMACs, shared/key_hashing.py):
- `APIKEY#<id>` / `APIKEY`: the key, one attribute per field (`limits` as JSON).
- `APIKEYHASH#<hash>` / `APIKEYHASH`: names the key (`key_id`) whose current secret, or whose
  previous secret during a rotation's grace, has this hash. A previous hash's item carries a
  TTL a day after its grace ends; reads check the key's own record anyway.
- `APIKEYS` and `APIKEYS#<tenant>`, sort key `<created_at ISO>#<id>`: the listings, every key
  and one tenant's, newest first by a Query of one partition (keys are made rarely: one
  partition holds them).
A key and its items are written by one TransactWriteItems. A look-up by hash is two consistent
GetItems; a listing is a Query and a GetItem per key. Nothing scans.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.adapters.store.dynamodb_calls import (
    bounded,
    condition_failed,
    conditional,
    expression,
    transact,
)
from shared.adapters.store.dynamodb_items import PK, SK, TTL, Item, iso, n, s
from shared.adapters.store.dynamodb_queries import decode_cursor
from shared.errors import Conflict
from shared.keys import ApiKeyRecord, KeyLimits
from shared.models import utcnow

if TYPE_CHECKING:
    from shared.adapters.store.dynamodb_table import ItemTable

CURSOR_TAG = "k1"
ALL_KEYS = "APIKEYS"
HASH_ITEM_SLACK = timedelta(days=1)  # a previous hash's item outlives its grace by this much
_TIMES = ("created_at", "last_used_at", "expires_at", "revoked_at", "previous_valid_until")
_TEXTS = ("tenant", "name", "prefix", "key_hash", "priority", "previous_hash")
# `expires_at` is the table's TTL attribute (epoch seconds): a key's own expiry is named apart
_ATTRIBUTE = {"expires_at": "key_expires_at"}


def _attribute(field: str) -> str:
    return _ATTRIBUTE.get(field, field)


def key_key(key_id: str) -> Item:
    return {PK: s(f"APIKEY#{key_id}"), SK: s("APIKEY")}


def hash_key(key_hash: str) -> Item:
    return {PK: s(f"APIKEYHASH#{key_hash}"), SK: s("APIKEYHASH")}


def listing_partitions(tenant: str) -> tuple[str, str]:
    return ALL_KEYS, f"{ALL_KEYS}#{quote(tenant, safe='')}"


def key_item(record: ApiKeyRecord) -> Item:
    item: Item = {**key_key(record.id), "limits": s(record.limits.model_dump_json())}
    for name in _TEXTS:
        if (value := getattr(record, name)) is not None:
            item[_attribute(name)] = s(value)
    for name in _TIMES:
        if (at := getattr(record, name)) is not None:
            item[_attribute(name)] = s(iso(at))
    return item


def record_of(item: Item) -> ApiKeyRecord:
    values: dict[str, Any] = {"id": item[PK]["S"].removeprefix("APIKEY#")}
    for name in (*_TEXTS, *_TIMES):
        if _attribute(name) in item:
            values[name] = item[_attribute(name)]["S"]
    values["limits"] = KeyLimits.model_validate_json(item["limits"]["S"])
    return ApiKeyRecord.model_validate(values)


def encode_cursor(record: ApiKeyRecord) -> str:
    raw = json.dumps([CURSOR_TAG, iso(record.created_at), record.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _put_new(table: str, item: Item) -> Item:
    absent = expression(ConditionExpression=f"attribute_not_exists(#{PK})")
    return {"Put": {"TableName": table, "Item": item, **absent}}


class DynamoDbApiKeys:
    """KeyStore on the single table; DynamoDbJobStore provides the ItemTable."""

    if TYPE_CHECKING:

        @property
        def _db(self) -> ItemTable: ...

    async def create_key(self, record: ApiKeyRecord) -> ApiKeyRecord:
        table, pointer = self._db.table, {"key_id": s(record.id)}
        entries = [
            {PK: s(partition), SK: s(f"{iso(record.created_at)}#{record.id}"), **pointer}
            for partition in listing_partitions(record.tenant)
        ]
        puts = [key_item(record), {**hash_key(record.key_hash), **pointer}, *entries]
        if await transact(self._db.ddb, [_put_new(table, item) for item in puts]) is not None:
            raise Conflict(f"key {record.id} (or its secret's hash) exists already")
        return record

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        item = await self._db.get(key_key(key_id))
        return record_of(item) if item is not None else None

    async def find_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        pointer = await self._db.get(hash_key(key_hash))
        record = await self.get_key(pointer["key_id"]["S"]) if pointer is not None else None
        if record is None or record.key_hash == key_hash:
            return record
        until = record.previous_valid_until
        if record.previous_hash == key_hash and until is not None and utcnow() < until:
            return record
        return None  # the item of a hash no longer valid (its TTL has not come yet)

    async def list_keys(
        self, *, tenant: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[ApiKeyRecord], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        partition = ALL_KEYS if tenant is None else listing_partitions(tenant)[1]
        params: dict[str, Any] = {
            "TableName": self._db.table,
            "ScanIndexForward": False,
            "Limit": limit + 1,
            **expression({":p": s(partition)}, KeyConditionExpression=f"#{PK} = :p"),
        }
        if cursor is not None:
            created_at, key_id = decode_cursor(cursor, CURSOR_TAG)
            params["ExclusiveStartKey"] = {PK: s(partition), SK: s(f"{created_at}#{key_id}")}
        page = await self._db.ddb.query(**params)
        entries = page.get("Items", [])
        found = await bounded(self.get_key(entry["key_id"]["S"]) for entry in entries[:limit])
        keys = [record for record in found if record is not None]
        more = len(entries) > limit
        return keys, encode_cursor(keys[-1]) if more and keys else None

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        params = expression(
            {":at": s(iso(at))},
            UpdateExpression="SET #revoked_at = if_not_exists(#revoked_at, :at)",
            ConditionExpression=f"attribute_exists(#{PK})",
        )
        key = key_key(key_id)
        response = await conditional(
            lambda: self._db.ddb.update_item(
                TableName=self._db.table, Key=key, ReturnValues="ALL_NEW", **params
            )
        )
        return record_of(response["Attributes"]) if response is not None else None

    async def rotate_key(
        self,
        key_id: str,
        *,
        expect_hash: str,
        new_hash: str,
        new_prefix: str,
        previous_valid_until: datetime | None,
    ) -> ApiKeyRecord | None:
        old = await self.get_key(key_id)
        if old is None or old.key_hash != expect_hash or old.revoked_at is not None:
            return None
        table = self._db.table
        ops = [
            self._rotation(key_id, expect_hash, new_hash, new_prefix, previous_valid_until),
            _put_new(table, {**hash_key(new_hash), "key_id": s(key_id)}),
        ]
        if previous_valid_until is None:
            ops.append({"Delete": {"TableName": table, "Key": hash_key(expect_hash)}})
        else:
            ttl = int((previous_valid_until + HASH_ITEM_SLACK).timestamp())
            update = expression({":ttl": n(ttl)}, UpdateExpression=f"SET #{TTL} = :ttl")
            ops.append({"Update": {"TableName": table, "Key": hash_key(expect_hash), **update}})
        if old.previous_hash is not None and old.previous_hash != expect_hash:
            ops.append({"Delete": {"TableName": table, "Key": hash_key(old.previous_hash)}})
        reasons = await transact(self._db.ddb, ops)
        if reasons is not None:
            if condition_failed(reasons[0]):
                return None  # another rotation (or a revocation) came first
            raise Conflict(f"the new secret's hash of key {key_id} exists already")
        return await self.get_key(key_id)

    def _rotation(
        self,
        key_id: str,
        expect_hash: str,
        new_hash: str,
        new_prefix: str,
        previous_valid_until: datetime | None,
    ) -> Item:
        values: Item = {":old": s(expect_hash), ":new": s(new_hash), ":prefix": s(new_prefix)}
        update = "SET #key_hash = :new, #prefix = :prefix"
        if previous_valid_until is None:
            update += " REMOVE #previous_hash, #previous_valid_until"
        else:
            update += ", #previous_hash = :old, #previous_valid_until = :until"
            values[":until"] = s(iso(previous_valid_until))
        condition = "#key_hash = :old AND attribute_not_exists(#revoked_at)"
        params = expression(values, UpdateExpression=update, ConditionExpression=condition)
        return {"Update": {"TableName": self._db.table, "Key": key_key(key_id), **params}}

    async def touch_key(self, key_id: str, at: datetime) -> None:
        condition = (
            f"attribute_exists(#{PK}) AND "
            "(attribute_not_exists(#last_used_at) OR #last_used_at < :at)"
        )
        params = expression(
            {":at": s(iso(at))},
            UpdateExpression="SET #last_used_at = :at",
            ConditionExpression=condition,
        )
        key = key_key(key_id)
        await conditional(
            lambda: self._db.ddb.update_item(TableName=self._db.table, Key=key, **params)
        )
