"""Run-time API keys: the admin use cases (KeyService) and authentication by key (KeyResolver).

A secret is shown once, when a key is made or rotated; the store sees only its keyed hash
(shared/key_hashing.py).

KeyResolver keeps each look-up, found or not, for KEY_CACHE_TTL_S in the process. That is the
bound on revocation: a key revoked (or expired, or rotated without grace) anywhere is refused by
every API process and Lambda container at most KEY_CACHE_TTL_S after the write, because an entry
is timed from before its read of the store. The process that made the change forgets its entries
at once. A cached record is still checked on every use (status, expiry, grace), so a cache entry
never stretches an expiry or a rotation's grace period.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from shared.errors import Conflict, NotFound
from shared.key_figures import KeyFigures, keys_usage_now
from shared.key_hashing import KeyHasher
from shared.keys import (
    ApiKeyPublic,
    ApiKeyRecord,
    Caller,
    KeyCreate,
    display_prefix,
    is_runtime_secret,
    new_secret,
)
from shared.models import utcnow
from shared.ports import KeyStore

log = logging.getLogger(__name__)

MAX_CACHED = 10_000  # look-ups kept per process; the oldest go first
TOUCH_EVERY_S = 60.0  # last_used_at is written at most this often per key per process


@dataclass
class _Entry:
    expires: float  # monotonic
    record: ApiKeyRecord | None


class KeyResolver:
    """The Caller a `ck_` secret authenticates, or None; cached per process for `ttl_s`."""

    def __init__(
        self,
        store: KeyStore,
        hasher: KeyHasher,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.ttl_s = ttl_s
        self._clock = clock
        self.now = now  # wall clock: expiries, grace periods
        self._max_cached = max_cached
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._touched: dict[str, float] = {}
        self.lookups = 0  # reads of the store (tests: the cache works)

    async def resolve(self, secret: str) -> Caller | None:
        if not is_runtime_secret(secret):
            return None
        key_hash = self.hasher.hash(secret)
        record = await self._record(key_hash)
        if record is None or not record.accepts(key_hash, self.now()):
            return None
        await self._touch(record.id)
        return record.caller()

    def forget(self) -> None:
        """Drop every cached look-up (this process changed a key)."""
        self._cache.clear()

    async def _record(self, key_hash: str) -> ApiKeyRecord | None:
        started = self._clock()  # before the read: an entry never outlives a write by > ttl
        entry = self._cache.get(key_hash)
        if entry is not None and entry.expires > started:
            return entry.record
        self.lookups += 1
        record = await self.store.find_key_by_hash(key_hash)
        if self.ttl_s > 0:
            self._cache[key_hash] = _Entry(started + self.ttl_s, record)
            self._cache.move_to_end(key_hash)
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
        return record

    async def _touch(self, key_id: str) -> None:
        """last_used_at, at most once a TOUCH_EVERY_S per key in this process; a failed write
        is logged, never the request's failure."""
        at = self._clock()
        last = self._touched.get(key_id)
        if last is not None and at - last < TOUCH_EVERY_S:
            return
        if len(self._touched) >= self._max_cached:
            self._touched.clear()
        self._touched[key_id] = at
        try:
            await self.store.touch_key(key_id, self.now())
        except Exception:
            log.warning("could not record the use of key %s", key_id, exc_info=True)


class KeyServiceStore(KeyStore, KeyFigures, Protocol):
    """The keys, and what they have used (their counters and per-key usage rows)."""


class KeyService:
    """Make, list, revoke and rotate run-time keys (the admin API and `chatjobs keys`)."""

    def __init__(self, store: KeyServiceStore, resolver: KeyResolver) -> None:
        self.store = store
        self.resolver = resolver

    @property
    def hasher(self) -> KeyHasher:
        return self.resolver.hasher

    async def create(self, body: KeyCreate) -> tuple[ApiKeyRecord, str]:
        """The new key and its secret (shown once)."""
        secret = new_secret()
        record = ApiKeyRecord(
            tenant=body.tenant,
            name=body.name,
            prefix=display_prefix(secret),
            key_hash=self.hasher.hash(secret),
            expires_at=body.expires_at,
            limits=body.limits,
            priority=body.priority,
        )
        stored = await self.store.create_key(record)
        self.resolver.forget()  # a negative entry for this secret cannot exist, but be plain
        return stored, secret

    async def shown(self, records: list[ApiKeyRecord]) -> list[ApiKeyPublic]:
        """The keys as the admin API shows them: with what each has used now."""
        now = self.resolver.now()
        usage = await keys_usage_now(self.store, records, now)
        return [record.public(now, usage[record.id]) for record in records]

    async def get(self, key_id: str) -> ApiKeyRecord:
        record = await self.store.get_key(key_id)
        if record is None:
            raise NotFound(key_id)
        return record

    async def list(
        self, *, tenant: str | None, limit: int, cursor: str | None
    ) -> tuple[list[ApiKeyRecord], str | None]:
        return await self.store.list_keys(tenant=tenant, limit=limit, cursor=cursor)

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        record = await self.store.revoke_key(key_id, self.resolver.now())
        self.resolver.forget()
        if record is None:
            raise NotFound(key_id)
        return record

    async def rotate(self, key_id: str, grace_period_s: int) -> tuple[ApiKeyRecord, str]:
        """A new secret (shown once); the old one works `grace_period_s` more (0: not at all)."""
        old = await self.get(key_id)
        now = self.resolver.now()
        if old.status(now) != "active":
            raise Conflict(f"key {key_id} is {old.status(now)}: only an active key is rotated")
        secret = new_secret()
        until = now + timedelta(seconds=grace_period_s) if grace_period_s > 0 else None
        rotated = await self.store.rotate_key(
            key_id,
            expect_hash=old.key_hash,
            new_hash=self.hasher.hash(secret),
            new_prefix=display_prefix(secret),
            previous_valid_until=until,
        )
        self.resolver.forget()
        if rotated is None:
            raise Conflict(f"key {key_id} changed while being rotated (rotated or revoked)")
        return rotated, secret
