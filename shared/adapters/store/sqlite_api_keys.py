"""Run-time API keys in SQLite: the `api_keys` table and SqliteApiKeys, the KeyStore half of
SqliteJobStore (a mixin over its writer and readers).

One row per key, a column per field (no secret: `key_hash` and `previous_hash` are keyed
hashes). Look-ups by hash use a unique index on `key_hash` and a partial one on
`previous_hash`; listings are keyset pages on (created_at, id), of every key or of one tenant.
A rotation is an UPDATE whose WHERE holds the hash it read: of two rotations, one changes the
row and the other changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared.adapters.store.sqlite_queries import decode_cursor, encode_cursor
from shared.adapters.store.sqlite_schema import ts
from shared.errors import Conflict
from shared.keys import ApiKeyRecord, KeyLimits
from shared.models import utcnow

if TYPE_CHECKING:
    import aiosqlite

T = TypeVar("T")

API_KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    expires_at TEXT,
    revoked_at TEXT,
    limits TEXT NOT NULL,
    priority TEXT NOT NULL,
    previous_hash TEXT,
    previous_valid_until TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_hash ON api_keys (key_hash);
CREATE INDEX IF NOT EXISTS api_keys_previous_hash ON api_keys (previous_hash)
    WHERE previous_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_keys_created ON api_keys (created_at, id);
CREATE INDEX IF NOT EXISTS api_keys_tenant_created ON api_keys (tenant, created_at, id);
"""

COLUMNS = (
    "id",
    "tenant",
    "name",
    "prefix",
    "key_hash",
    "created_at",
    "last_used_at",
    "expires_at",
    "revoked_at",
    "limits",
    "priority",
    "previous_hash",
    "previous_valid_until",
)
_TIMES = frozenset({"created_at", "last_used_at", "expires_at", "revoked_at"})
SELECT = f"SELECT {', '.join(COLUMNS)} FROM api_keys"
INSERT = f"INSERT INTO api_keys ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
BY_ID = f"{SELECT} WHERE id = ?"
BY_HASH = f"{SELECT} WHERE key_hash = ?"
BY_PREVIOUS_HASH = f"{SELECT} WHERE previous_hash = ? AND previous_valid_until > ?"
REVOKE = "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?"
ROTATE = (
    "UPDATE api_keys SET key_hash = ?, prefix = ?, previous_hash = ?, previous_valid_until = ?"
    " WHERE id = ? AND key_hash = ? AND revoked_at IS NULL"
)
TOUCH = (
    "UPDATE api_keys SET last_used_at = ?"
    " WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)


def _text(value: datetime | None) -> str | None:
    return ts(value)


def key_row(record: ApiKeyRecord) -> tuple[Any, ...]:
    values = record.model_dump()
    values["limits"] = record.limits.model_dump_json()
    for name in (*_TIMES, "previous_valid_until"):
        values[name] = _text(values[name])
    return tuple(values[name] for name in COLUMNS)


def key_from_row(row: Sequence[Any]) -> ApiKeyRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    values["limits"] = KeyLimits.model_validate_json(values["limits"])
    return ApiKeyRecord.model_validate(values)


def list_query(tenant: str | None, cursor: str | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    if cursor is not None:
        where.append("(created_at, id) < (?, ?)")
        params.extend(decode_cursor(cursor))
    sql = SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
    return f"{sql} ORDER BY created_at DESC, id DESC LIMIT ?", params


class SqliteApiKeys:
    """KeyStore on the `api_keys` table; SqliteJobStore provides the connections."""

    if TYPE_CHECKING:

        async def _write(
            self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True
        ) -> T: ...

        async def _read_row(self, sql: str, params: Sequence[Any]) -> list[Any]: ...

        @property
        def _read(self) -> aiosqlite.Connection: ...

    async def create_key(self, record: ApiKeyRecord) -> ApiKeyRecord:
        row = key_row(record)

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(INSERT, row)
            except sqlite3.IntegrityError:
                raise Conflict(f"key {record.id} (or its secret's hash) exists already") from None

        await self._write(insert)
        return record

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        rows = await self._read_row(BY_ID, (key_id,))
        return key_from_row(rows[0]) if rows else None

    async def find_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        rows = await self._read_row(BY_HASH, (key_hash,))
        if not rows:
            rows = await self._read_row(BY_PREVIOUS_HASH, (key_hash, _text(utcnow())))
        return key_from_row(rows[0]) if rows else None

    async def list_keys(
        self, *, tenant: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[ApiKeyRecord], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        sql, params = list_query(tenant, cursor)
        rows = list(await self._read.execute_fetchall(sql, [*params, limit + 1]))
        keys = [key_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return keys, encode_cursor(keys[-1].created_at, keys[-1].id) if more else None

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        def revoke(db: sqlite3.Connection) -> list[Any]:
            db.execute(REVOKE, (_text(at), key_id))
            return db.execute(BY_ID, (key_id,)).fetchall()

        rows = await self._write(revoke)
        return key_from_row(rows[0]) if rows else None

    async def rotate_key(
        self,
        key_id: str,
        *,
        expect_hash: str,
        new_hash: str,
        new_prefix: str,
        previous_valid_until: datetime | None,
    ) -> ApiKeyRecord | None:
        previous = expect_hash if previous_valid_until is not None else None
        params = (new_hash, new_prefix, previous, _text(previous_valid_until), key_id, expect_hash)

        def rotate(db: sqlite3.Connection) -> list[Any]:
            if db.execute(ROTATE, params).rowcount != 1:
                return []
            return db.execute(BY_ID, (key_id,)).fetchall()

        rows = await self._write(rotate)
        return key_from_row(rows[0]) if rows else None

    async def touch_key(self, key_id: str, at: datetime) -> None:
        when = _text(at)
        # no fsync of its own: a last-used time lost with the machine is only a little stale
        await self._write(lambda db: db.execute(TOUCH, (when, key_id, when)), durable=False)
