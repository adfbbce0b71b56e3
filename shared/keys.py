"""Who is calling: the tenant, the API key it used, that key's limits and default priority.

A bootstrap key (API_KEYS in the environment) has no id and no limits beyond RATE_LIMIT; a key
made at run time (`POST /v1/admin/keys`) carries its own. The API builds one `Caller` per request
(api/auth.py) and the use cases stamp its key id and priority on the jobs it submits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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
