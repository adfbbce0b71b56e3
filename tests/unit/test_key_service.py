"""Run-time API keys without I/O: secrets, the keyed hash and its server secret, and the
resolver's per-process cache (what bounds revocation) and last-used throttle, on fakes."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.errors import Conflict, NotFound
from shared.key_hashing import KeyHasher, derived_secret, hasher_from
from shared.key_service import TOUCH_EVERY_S, KeyResolver, KeyService
from shared.keys import ApiKeyRecord, KeyCreate, KeyLimits, is_runtime_secret
from shared.models import utcnow
from tests.conftest import make_settings
from tests.fakes import FakeJobStore

HASHER = KeyHasher(b"unit-test-key-hash-secret")


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = utcnow()

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def service(store: FakeJobStore, clock: Clock, ttl_s: float = 5) -> KeyService:
    resolver = KeyResolver(store, HASHER, ttl_s, clock=clock.monotonic, now=clock.now)
    return KeyService(store, resolver)


async def test_a_secret_is_shown_once_and_stored_as_a_keyed_hash() -> None:
    store = FakeJobStore()
    body = KeyCreate(tenant="acme", name="prod", limits=KeyLimits(rpm=10), priority="low")
    record, secret = await service(store, Clock()).create(body)
    assert secret.startswith("ck_") and len(secret) >= 3 + 32 and is_runtime_secret(secret)
    assert record.prefix == secret[:11] and record.key_hash == HASHER.hash(secret)
    assert secret not in record.model_dump_json() and secret not in repr(store.api_keys)
    assert record.id.startswith("key_") and record.status(utcnow()) == "active"
    [shown] = await service(store, Clock()).shown([record])
    public = shown.model_dump()
    assert "key_hash" not in public and "previous_hash" not in public
    assert (public["tenant"], public["limits"]["rpm"], public["priority"]) == ("acme", 10, "low")


async def test_the_resolver_answers_from_its_cache_until_the_ttl_passes() -> None:
    store, clock = FakeJobStore(), Clock()
    record, secret = await service(store, clock).create(KeyCreate(tenant="acme", name="x"))
    other = service(store, clock)  # another API process: its own cache
    caller = await other.resolver.resolve(secret)
    assert caller is not None and (caller.tenant, caller.key_id) == ("acme", record.id)
    await service(store, clock).revoke(record.id)  # revoked by a third process
    clock.advance(4.9)
    assert await other.resolver.resolve(secret) is not None  # still cached
    assert other.resolver.lookups == 1
    clock.advance(0.2)
    assert await other.resolver.resolve(secret) is None  # 5 s: read again, refused
    assert other.resolver.lookups == 2


async def test_unknown_secrets_are_cached_too_and_the_changing_process_forgets() -> None:
    store, clock = FakeJobStore(), Clock()
    keys = service(store, clock)
    assert await keys.resolver.resolve("ck_" + "x" * 43) is None
    assert await keys.resolver.resolve("ck_" + "x" * 43) is None
    assert keys.resolver.lookups == 1
    assert await keys.resolver.resolve("not-a-run-time-key") is None
    assert keys.resolver.lookups == 1  # not even looked up
    record, secret = await keys.create(KeyCreate(tenant="acme", name="x"))
    assert await keys.resolver.resolve(secret) is not None
    await keys.revoke(record.id)
    assert await keys.resolver.resolve(secret) is None  # this process: at once


async def test_a_zero_ttl_reads_the_store_every_time() -> None:
    store, clock = FakeJobStore(), Clock()
    keys = service(store, clock, ttl_s=0)
    _, secret = await keys.create(KeyCreate(tenant="acme", name="x"))
    for _ in range(3):
        assert await keys.resolver.resolve(secret) is not None
    assert keys.resolver.lookups == 3


async def test_a_cached_key_still_expires_and_its_old_secret_still_ends_on_time() -> None:
    store, clock = FakeJobStore(), Clock()
    keys = service(store, clock, ttl_s=300)
    expiring, secret = await keys.create(
        KeyCreate(tenant="acme", name="x", expires_at=utcnow() + timedelta(seconds=30))
    )
    assert await keys.resolver.resolve(secret) is not None
    clock.advance(31)
    assert await keys.resolver.resolve(secret) is None
    assert expiring.status(clock.now()) == "expired"
    with pytest.raises(Conflict, match="expired"):
        await keys.rotate(expiring.id, 60)

    record, old = await keys.create(KeyCreate(tenant="acme", name="y"))
    _, new = await keys.rotate(record.id, 60)
    other = service(store, clock, ttl_s=300)
    assert await other.resolver.resolve(old) is not None  # in its grace: cached now
    assert await other.resolver.resolve(new) is not None
    clock.advance(61)
    assert await other.resolver.resolve(old) is None  # the cached record says the grace ended
    assert await other.resolver.resolve(new) is not None


async def test_rotation_without_grace_and_of_a_revoked_or_missing_key() -> None:
    store, clock = FakeJobStore(), Clock()
    keys = service(store, clock)
    record, old = await keys.create(KeyCreate(tenant="acme", name="x"))
    rotated, new = await keys.rotate(record.id, 0)
    assert rotated.previous_hash is None and new != old
    assert await keys.resolver.resolve(old) is None
    assert await keys.resolver.resolve(new) is not None
    await keys.revoke(record.id)
    with pytest.raises(Conflict, match="revoked"):
        await keys.rotate(record.id, 60)
    with pytest.raises(NotFound):
        await keys.rotate("key_missing", 60)
    with pytest.raises(NotFound):
        await keys.revoke("key_missing")


async def test_last_used_is_written_at_most_once_a_minute_per_key() -> None:
    store, clock = FakeJobStore(), Clock()
    keys = service(store, clock)
    record, secret = await keys.create(KeyCreate(tenant="acme", name="x"))
    writes: list[datetime] = []
    touch = store.touch_key

    async def counted(key_id: str, at: datetime) -> None:
        writes.append(at)
        await touch(key_id, at)

    store.touch_key = counted  # type: ignore[method-assign]
    for _ in range(50):
        assert await keys.resolver.resolve(secret) is not None
        clock.advance(1)
    assert len(writes) == 1 + 50 // int(TOUCH_EVERY_S)
    stored = store.api_keys[record.id]
    assert stored.last_used_at == writes[-1]


async def test_a_failed_last_used_write_does_not_fail_the_request() -> None:
    store, clock = FakeJobStore(), Clock()
    keys = service(store, clock)
    _, secret = await keys.create(KeyCreate(tenant="acme", name="x"))

    async def broken(key_id: str, at: datetime) -> None:
        raise OSError("disk gone")

    store.touch_key = broken  # type: ignore[method-assign]
    assert await keys.resolver.resolve(secret) is not None


def test_key_create_refuses_a_past_expiry_and_a_bad_tenant() -> None:
    with pytest.raises(ValueError, match="future"):
        KeyCreate(tenant="acme", name="x", expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(ValueError, match="tenant"):
        KeyCreate(tenant="a b", name="x")


def test_the_hash_secret_comes_from_its_setting_else_the_webhook_master(tmp_path: Path) -> None:
    given = make_settings(key_hash_secret="k" * 32, webhook_signing_secret="w" * 32)
    assert hasher_from(given).hash("ck_x") == KeyHasher(b"k" * 32).hash("ck_x")
    derived = make_settings(webhook_signing_secret="w" * 32)
    assert hasher_from(derived).hash("ck_x") == KeyHasher(derived_secret("w" * 32)).hash("ck_x")
    assert derived_secret("w" * 32) != ("w" * 32).encode()  # its own label: not the master


def test_embedded_without_secrets_keeps_a_random_one_beside_the_database(tmp_path: Path) -> None:
    settings = make_settings(
        webhook_signing_secret=None, sqlite_path=str(tmp_path / "data" / "chatjobs.db")
    )
    first = hasher_from(settings).hash("ck_x")
    path = tmp_path / "data" / "key-hash-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert hasher_from(settings).hash("ck_x") == first  # the same after a restart


def test_lambda_refuses_to_hash_keys_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chatjobs-api")
    with pytest.raises(ValueError, match="KEY_HASH_SECRET"):
        hasher_from(make_settings(webhook_signing_secret=None, api_keys="t1:k1"))
    assert hasher_from(make_settings(key_hash_secret="k" * 32, api_keys="t1:k1"))


def test_a_record_accepts_only_its_hashes_while_active() -> None:
    now = utcnow()
    record = ApiKeyRecord(
        tenant="t",
        name="n",
        prefix="ck_",
        key_hash="a" * 64,
        previous_hash="b" * 64,
        previous_valid_until=now + timedelta(seconds=5),
    )
    assert record.accepts("a" * 64, now) and record.accepts("b" * 64, now)
    assert not record.accepts("b" * 64, now + timedelta(seconds=5))
    assert not record.accepts("c" * 64, now)
    revoked = record.model_copy(update={"revoked_at": now})
    assert not revoked.accepts("a" * 64, now) and revoked.status(now) == "revoked"
