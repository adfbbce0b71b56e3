"""The KeyStore contract (run-time API keys), run against the fake, SQLite and DynamoDB (moto).

`KeyStoreContract` holds the tests; each `Test…` subclass only says how to build its store. On
DynamoDB a botocore hook refuses every Scan, so a test that needed one fails."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout
from shared.adapters.store.dynamodb import DynamoDbJobStore
from shared.adapters.store.sqlite import SqliteJobStore
from shared.errors import Conflict, InvalidCursor
from shared.keys import ApiKeyRecord, KeyLimits
from shared.models import utcnow
from shared.ports import KeyStore
from tests.fakes import FakeJobStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_hash() -> str:
    return secrets.token_hex(32)


def make_key(tenant: str = "t1", **fields: Any) -> ApiKeyRecord:
    values: dict[str, Any] = {"name": "backend", "prefix": "ck_abcd1234", "key_hash": a_hash()}
    return ApiKeyRecord(tenant=tenant, **(values | fields))


async def all_pages(store: KeyStore, **options: Any) -> list[ApiKeyRecord]:
    seen: list[ApiKeyRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_keys(cursor=cursor, **options)
        seen.extend(page)
        if cursor is None:
            return seen


class KeyStoreContract:
    @pytest.fixture
    def store(self) -> KeyStore:
        raise NotImplementedError

    async def test_a_key_reads_back_equal_by_id_and_by_hash(self, store: KeyStore) -> None:
        key = make_key(
            expires_at=T0 + timedelta(days=400),
            limits=KeyLimits(rpm=60, monthly_tokens=10**6),
            priority="high",
        )
        assert await store.create_key(key) == key
        assert await store.get_key(key.id) == key
        assert await store.find_key_by_hash(key.key_hash) == key
        assert await store.get_key("key_missing") is None
        assert await store.find_key_by_hash(a_hash()) is None

    async def test_an_id_or_a_hash_is_taken_once(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())
        with pytest.raises(Conflict):
            await store.create_key(make_key(id=key.id))
        with pytest.raises(Conflict):
            await store.create_key(make_key(key_hash=key.key_hash))
        assert await store.find_key_by_hash(key.key_hash) == key

    async def test_listing_is_newest_first_in_pages_and_by_tenant(self, store: KeyStore) -> None:
        made = [
            await store.create_key(make_key("t1" if n % 3 else "t2", created_at=T0 + timedelta(n)))
            for n in range(7)
        ]
        newest_first = sorted(made, key=lambda k: k.created_at, reverse=True)
        assert [k.id for k in await all_pages(store, limit=2)] == [k.id for k in newest_first]
        t2 = [k.id for k in newest_first if k.tenant == "t2"]
        assert [k.id for k in await all_pages(store, tenant="t2", limit=1)] == t2
        assert await all_pages(store, tenant="nobody") == []
        page, cursor = await store.list_keys(limit=7)
        assert len(page) == 7 and cursor is None

    async def test_a_cursor_of_another_making_is_refused(self, store: KeyStore) -> None:
        await store.create_key(make_key())
        with pytest.raises(InvalidCursor):
            await store.list_keys(cursor="bm90LWEtY3Vyc29y")
        with pytest.raises(ValueError):
            await store.list_keys(limit=0)

    async def test_revoking_keeps_the_first_time_and_the_record(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())
        first = await store.revoke_key(key.id, T0)
        assert first is not None and first.revoked_at == T0 and first.status(T0) == "revoked"
        again = await store.revoke_key(key.id, T0 + timedelta(hours=1))
        assert again is not None and again.revoked_at == T0
        assert await store.revoke_key("key_missing", T0) is None
        found = await store.find_key_by_hash(key.key_hash)  # found: the caller sees its status
        assert found is not None and found.revoked_at == T0

    async def test_rotation_keeps_the_old_hash_during_its_grace_only(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())
        new, until = a_hash(), utcnow() + timedelta(hours=1)
        rotated = await store.rotate_key(
            key.id,
            expect_hash=key.key_hash,
            new_hash=new,
            new_prefix="ck_new12345",
            previous_valid_until=until,
        )
        assert rotated is not None
        assert (rotated.key_hash, rotated.prefix, rotated.previous_hash) == (
            new,
            "ck_new12345",
            key.key_hash,
        )
        assert rotated.previous_valid_until == until
        assert await store.find_key_by_hash(new) == rotated
        assert await store.find_key_by_hash(key.key_hash) == rotated
        newer = a_hash()
        again = await store.rotate_key(
            key.id,
            expect_hash=new,
            new_hash=newer,
            new_prefix="ck_newer123",
            previous_valid_until=utcnow() - timedelta(seconds=1),  # its grace is over already
        )
        assert again is not None and again.previous_hash == new
        assert await store.find_key_by_hash(key.key_hash) is None  # two rotations back
        assert await store.find_key_by_hash(new) is None  # grace over
        assert await store.find_key_by_hash(newer) == again

    async def test_rotation_without_grace_drops_the_old_hash(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())
        new = a_hash()
        rotated = await store.rotate_key(
            key.id,
            expect_hash=key.key_hash,
            new_hash=new,
            new_prefix="ck_x",
            previous_valid_until=None,
        )
        assert rotated is not None and rotated.previous_hash is None
        assert rotated.previous_valid_until is None
        assert await store.find_key_by_hash(key.key_hash) is None
        assert await store.find_key_by_hash(new) == rotated

    async def test_rotation_is_a_compare_and_set(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())

        async def rotate() -> ApiKeyRecord | None:
            return await store.rotate_key(
                key.id,
                expect_hash=key.key_hash,
                new_hash=a_hash(),
                new_prefix="ck_race",
                previous_valid_until=utcnow() + timedelta(hours=1),
            )

        outcomes = await asyncio.gather(*(rotate() for _ in range(4)))
        winners = [o for o in outcomes if o is not None]
        assert len(winners) == 1
        assert await store.get_key(key.id) == winners[0]

    async def test_a_revoked_or_missing_key_is_not_rotated(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())
        await store.revoke_key(key.id, utcnow())
        options: dict[str, Any] = {"new_prefix": "ck_x", "previous_valid_until": None}
        assert (
            await store.rotate_key(key.id, expect_hash=key.key_hash, new_hash=a_hash(), **options)
            is None
        )
        assert (
            await store.rotate_key("key_missing", expect_hash="x", new_hash=a_hash(), **options)
            is None
        )
        stale = await store.create_key(make_key())
        assert (
            await store.rotate_key(stale.id, expect_hash=a_hash(), new_hash=a_hash(), **options)
            is None
        )
        assert await store.get_key(stale.id) == stale

    async def test_touch_keeps_the_latest_use(self, store: KeyStore) -> None:
        key = await store.create_key(make_key())
        await store.touch_key(key.id, T0 + timedelta(minutes=2))
        await store.touch_key(key.id, T0 + timedelta(minutes=1))  # late and older: ignored
        found = await store.get_key(key.id)
        assert found is not None and found.last_used_at == T0 + timedelta(minutes=2)
        assert found.model_copy(update={"last_used_at": None}) == key
        await store.touch_key("key_missing", T0)  # no error, nothing made
        assert await store.get_key("key_missing") is None


class TestFakeKeyStore(KeyStoreContract):
    @pytest.fixture
    def store(self) -> KeyStore:
        return FakeJobStore()


class TestSqliteKeyStore(KeyStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[KeyStore]:
        store = SqliteJobStore(str(tmp_path / "chatjobs.db"))
        await store.start()
        yield store
        await store.close()

    async def test_keys_survive_a_restart(self, tmp_path: Path) -> None:
        path = str(tmp_path / "restart.db")
        first = SqliteJobStore(path)
        await first.start()
        key = await first.create_key(make_key())
        await first.close()
        second = SqliteJobStore(path)
        await second.start()
        assert await second.find_key_by_hash(key.key_hash) == key
        await second.close()


def refuse_scans(**_: Any) -> None:
    raise AssertionError("a Scan of the table: product code must Query or GetItem")


@pytest.mark.integration
class TestDynamoDbKeyStore(KeyStoreContract):
    @pytest.fixture
    async def store(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> AsyncIterator[KeyStore]:
        ddb = await aws_clients.client("dynamodb")
        ddb.meta.events.register("before-call.dynamodb.Scan", refuse_scans)
        store = DynamoDbJobStore(aws_clients, aws_layout.table)
        await store.start()
        yield store
        await store.close()

    async def test_the_scan_guard_works(
        self, aws_clients: AwsClients, aws_layout: AwsLayout
    ) -> None:
        ddb = await aws_clients.client("dynamodb")
        ddb.meta.events.register("before-call.dynamodb.Scan", refuse_scans)
        with pytest.raises(AssertionError, match="Scan"):
            await ddb.scan(TableName=aws_layout.table)
