"""/v1/usage: the caller's usage per day, model or provider, from counters kept as jobs end."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.deps import TenantDep, UsageDep
from api.errors import ApiError, FieldError, documented
from api.jsonbody import StrictJsonRoute
from shared.errors import InvalidPeriod
from shared.usage_report import DEFAULT_DAYS, MAX_DAYS, GroupBy, UsageReport

router = APIRouter(prefix="/v1", tags=["usage"], route_class=StrictJsonRoute)


def _iso_date(value: Any) -> Any:
    """Only `YYYY-MM-DD`: not the timestamps and datetimes a lax `date` also takes."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]

From = Annotated[
    IsoDate | None,
    Query(
        alias="from",
        description=f"First UTC day (YYYY-MM-DD); default: {DEFAULT_DAYS - 1} days before `to`. "
        f"Must not be after `to`, and `from`..`to` spans at most {MAX_DAYS} days (so without "
        f"`to`, at most {MAX_DAYS - 1} days back): otherwise 422 naming `from` and `to`.",
        examples=["2026-01-01"],
    ),
]
To = Annotated[
    IsoDate | None,
    Query(
        alias="to",
        description=f"Last UTC day, included (YYYY-MM-DD); default: today. At most {MAX_DAYS} "
        "days from `from`, counting both.",
        examples=["2026-01-31"],
    ),
]
GroupByParam = Annotated[
    GroupBy,
    Query(
        description="One row per day, model, provider or API key (`key`: a row per run-time "
        "key id, and `bootstrap` for keys from API_KEYS).",
        examples=["model"],
    ),
]


@router.get("/usage", response_model=UsageReport, responses=documented(401, 422))
async def get_usage(
    usage: UsageDep,
    tenant: TenantDep,
    start: From = None,
    end: To = None,
    group_by: GroupByParam = GroupBy.day,
) -> UsageReport:
    """The caller's requests, outcomes, cache hits, LLM calls, tokens and LLM latency per group."""
    try:
        return await usage.report(tenant, start, end, group_by)
    except InvalidPeriod as exc:
        fields = [FieldError(field=name, message=str(exc)) for name in exc.fields]
        raise ApiError(422, "invalid_request", str(exc), fields=fields) from None
