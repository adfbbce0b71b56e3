"""Who is calling: the tenant, the API key it used, that key's limits and default priority.

A bootstrap key (API_KEYS in the environment) has no id and no limits beyond RATE_LIMIT; a key
made at run time (`POST /v1/admin/keys`) carries its own. The API builds one `Caller` per request
(api/auth.py) and the use cases stamp its key id and priority on the jobs it submits.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")  # the order workers pick them in
DEFAULT_PRIORITY: Priority = "normal"

PositiveLimit = Annotated[int | None, Field(ge=1, le=10**12)]


class KeyLimits(BaseModel):
    """A key's optional limits; null: no limit of that kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: PositiveLimit = Field(None, description="Requests per minute.", examples=[600])
    tpm: PositiveLimit = Field(
        None,
        description="Tokens per minute, counted when a job ends and enforced on the next request.",
        examples=[100_000],
    )
    max_in_flight: PositiveLimit = Field(
        None, description="Jobs queued or running at once.", examples=[50]
    )
    monthly_requests: PositiveLimit = Field(
        None, description="Requests per calendar month (UTC).", examples=[100_000]
    )
    monthly_tokens: PositiveLimit = Field(
        None, description="Tokens per calendar month (UTC).", examples=[10_000_000]
    )


NO_LIMITS = KeyLimits()


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request."""

    tenant: str
    key_id: str | None = None  # None: a bootstrap key from API_KEYS, or no keys at all
    limits: KeyLimits = field(default=NO_LIMITS)
    priority: Priority = DEFAULT_PRIORITY

    def priority_for(self, asked: Priority | None) -> Priority:
        """The request's own priority, else the key's default."""
        return asked or self.priority


class KeyHold(BaseModel):
    """What a job took from its key's limits when it was admitted; shared/key_usage.py says
    what its changes give back or settle (a job without one settles nothing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    month: str  # "YYYY-MM" (UTC): the month its tokens count in
    tokens: int | None = None  # tokens reserved for it; None: no monthly token budget to settle
    slot: bool = False  # it holds one of the key's max_in_flight until it ends
    per_minute: bool = False  # its tokens count in the minute it ends (the key has a tpm)


# --- API keys made at run time (POST /v1/admin/keys): records, status, the public view ---------
# A key's secret is `ck_` and 43 random url-safe characters (32 bytes from `secrets`). It is
# shown once, when made or rotated; the store keeps only HMAC-SHA256(KEY_HASH_SECRET, secret)
# (shared/key_hashing.py) and `prefix`, a few characters to tell keys apart in a listing.

SECRET_PREFIX = "ck_"
SECRET_BYTES = 32
PREFIX_CHARS = 8  # of the secret after `ck_`, shown as `ck_abcd1234`
KEY_ID_EXAMPLE = "key_3f9a1c7e5b2d4f6a8c0e1b3d"
KeyStatus = Literal["active", "expired", "revoked"]
TenantName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
        description="The tenant the key acts for: letters, digits and `._@-`, up to 128.",
        examples=["acme"],
    ),
]
KeyName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="What the key is for, for people (not secret).",
        examples=["acme production backend"],
    ),
]


def new_key_id() -> str:
    return f"key_{secrets.token_hex(12)}"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def is_runtime_secret(given: str) -> bool:
    """Looks like a key made at run time (`ck_…`): worth a look-up in the store."""
    return given.startswith(SECRET_PREFIX) and len(given) > len(SECRET_PREFIX) + PREFIX_CHARS


def display_prefix(secret: str) -> str:
    """`ck_` and the first PREFIX_CHARS characters after it: enough to recognise a key."""
    return secret[: len(SECRET_PREFIX) + PREFIX_CHARS]


def _now() -> datetime:
    return datetime.now(UTC)


class ApiKeyRecord(BaseModel):
    """A stored run-time key: everything but its secret."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_key_id)
    tenant: str
    name: str
    prefix: str
    key_hash: str  # hex HMAC-SHA256 of the current secret
    created_at: datetime = Field(default_factory=_now)
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    limits: KeyLimits = NO_LIMITS
    priority: Priority = DEFAULT_PRIORITY
    # a rotation: the secret before this one, accepted until `previous_valid_until`
    previous_hash: str | None = None
    previous_valid_until: datetime | None = None

    def status(self, now: datetime) -> KeyStatus:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def accepts(self, key_hash: str, now: datetime) -> bool:
        """True when an active key's current secret, or its previous one within the grace
        period, hashes to `key_hash` (compared in constant time)."""
        if self.status(now) != "active":
            return False
        current = hmac.compare_digest(key_hash, self.key_hash)
        previous = self.previous_hash is not None and hmac.compare_digest(
            key_hash, self.previous_hash
        )
        in_grace = self.previous_valid_until is not None and now < self.previous_valid_until
        return current or (previous and in_grace)

    def caller(self) -> Caller:
        return Caller(self.tenant, self.id, self.limits, self.priority)

    def public(self, now: datetime, usage: KeyUsageNow) -> ApiKeyPublic:
        grace = self.previous_valid_until
        return ApiKeyPublic(
            id=self.id,
            prefix=self.prefix,
            name=self.name,
            tenant=self.tenant,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            expires_at=self.expires_at,
            revoked_at=self.revoked_at,
            status=self.status(now),
            limits=self.limits,
            priority=self.priority,
            previous_secret_valid_until=grace if grace is not None and now < grace else None,
            usage=usage,
        )


class KeyUsageNow(BaseModel):
    """A key's use of its limits now, as the admin API shows it (shared/key_figures.py).

    Figures a limit is checked against are read from the key's own counters, exact and including
    what its unfinished jobs hold; a key without that limit shows its usage rows instead (what
    `/v1/usage?group_by=key` counts: jobs that ended)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "month": "2026-12",
                    "resets_at": "2027-01-01T00:00:00Z",
                    "requests": 50,
                    "tokens": 12400,
                    "in_flight": 3,
                }
            ]
        }
    )

    month: str = Field(
        description="The UTC calendar month the figures are for (YYYY-MM).", examples=["2026-12"]
    )
    resets_at: datetime = Field(
        description="When the monthly budgets start again: the first instant of the next UTC "
        "month.",
        examples=["2027-01-01T00:00:00Z"],
    )
    requests: int = Field(
        description="Requests this month. With a `monthly_requests` or `monthly_tokens` budget: "
        "those admitted (cache hits included), the count the budget is checked against; "
        "without one: those that ended.",
        examples=[50],
    )
    tokens: int = Field(
        description="Tokens this month. With a `monthly_tokens` budget: those its ended jobs "
        "used plus those reserved for its jobs not yet ended, the count the budget is checked "
        "against; without one: those its ended jobs used.",
        examples=[12400],
    )
    in_flight: int | None = Field(
        description="Its jobs admitted and not yet ended (queued or running), counted for a "
        "key with `max_in_flight`; null for a key without one.",
        examples=[3],
    )


class ApiKeyPublic(BaseModel):
    """A run-time API key as the admin API shows it: never its secret nor its hash."""

    id: str = Field(description="The key's stable id.", examples=[KEY_ID_EXAMPLE])
    object: Literal["api_key"] = Field("api_key", description="Always `api_key`.")
    prefix: str = Field(
        description="The secret's first characters, to recognise it.", examples=["ck_Xq3vB9kL"]
    )
    name: str = Field(description="What the key is for.", examples=["acme production backend"])
    tenant: str = Field(description="The tenant it acts for.", examples=["acme"])
    created_at: datetime = Field(description="When it was made.")
    last_used_at: datetime | None = Field(
        description="When it last authenticated a request (updated at most once a minute per "
        "API process); null: never."
    )
    expires_at: datetime | None = Field(description="When it stops working; null: never.")
    revoked_at: datetime | None = Field(description="When it was revoked; null: it was not.")
    status: KeyStatus = Field(
        description="`active`, `expired` (past `expires_at`) or `revoked`.", examples=["active"]
    )
    limits: KeyLimits = Field(description="Its limits; a null limit is no limit.")
    priority: Priority = Field(
        description="The priority of the jobs it submits that name none.", examples=["normal"]
    )
    previous_secret_valid_until: datetime | None = Field(
        None,
        description="After a rotation: until when the secret it replaced still works; null "
        "when no previous secret works any more.",
    )
    usage: KeyUsageNow = Field(
        description="What it has used this month, and its jobs in flight now (read when answering)."
    )


class ApiKeyCreated(ApiKeyPublic):
    """A key just made or rotated, with its secret: shown this once, never again."""

    key: str = Field(
        description="The secret (`ck_…`), sent as `Authorization: Bearer <key>`. Store it now: "
        "the service keeps only a keyed hash of it.",
        examples=["ck_Xq3vB9kLm2Rt7YwPz4Nf8Hc1Dj6Gs0Ua5Ke9Vb3Qx7"],
    )


class KeyCreate(BaseModel):
    """A new run-time key."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant": "acme",
                    "name": "acme production backend",
                    "expires_at": "2027-01-01T00:00:00Z",
                    "limits": {"rpm": 600, "max_in_flight": 50},
                    "priority": "normal",
                }
            ]
        },
    )

    tenant: TenantName
    name: KeyName
    expires_at: AwareDatetime | None = Field(
        None,
        description="When it stops working (ISO 8601 with a time zone, in the future); null: "
        "never.",
        examples=["2027-01-01T00:00:00Z"],
    )
    limits: KeyLimits = Field(NO_LIMITS, description="Its limits; omitted: none.")
    priority: Priority = Field(
        DEFAULT_PRIORITY,
        description="The priority of the jobs it submits that name none.",
        examples=["normal"],
    )

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= _now():
            raise ValueError("must be in the future")
        return value


MAX_GRACE_S = 30 * 86_400
DEFAULT_GRACE_S = 3_600


class KeyRotate(BaseModel):
    """A rotation: a new secret, and how long the old one keeps working."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"grace_period_s": 3600}]}
    )

    grace_period_s: int = Field(
        DEFAULT_GRACE_S,
        ge=0,
        le=MAX_GRACE_S,
        description=f"Seconds the old secret keeps working (0 to {MAX_GRACE_S}); 0: it stops "
        "now in this API process, and in every other within KEY_CACHE_TTL_S.",
        examples=[3600],
    )


class ApiKeyPage(BaseModel):
    """A page of keys, newest first."""

    data: list[ApiKeyPublic] = Field(description="The keys on this page, newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
