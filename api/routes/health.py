"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ServicesDep
from api.errors import ErrorDetail

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 2.0

router = APIRouter(tags=["operations"])

CheckState = Literal["ok", "failing", "disabled"]
Checks = dict[str, CheckState]
CHECKS_DESCRIPTION = "Each dependency (`store`, `queue`, `cache`) and its state."


class Health(BaseModel):
    """/healthz: the process is up."""

    status: Literal["ok"] = Field(description="Always `ok`.")


class Readiness(BaseModel):
    """/readyz when every dependency answers."""

    status: Literal["ready"] = Field(description="Always `ready`.")
    checks: Checks = Field(description=CHECKS_DESCRIPTION)


class Unready(BaseModel):
    """/readyz when a dependency does not answer: the checks, and the error naming it."""

    status: Literal["unavailable"] = Field(description="Always `unavailable`.")
    checks: Checks = Field(description=CHECKS_DESCRIPTION)
    error: ErrorDetail = Field(description="`not_ready`, naming what does not answer.")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Unready, "description": "A dependency is unreachable"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: the store, the queue and the cache all answer (and the store takes writes,
    after one failed for want of room)."""
    pings: dict[str, Callable[[], Awaitable[bool]]] = {
        "store": services.store.ping,
        "queue": services.queue.ping,
    }
    if services.cache is not None:
        pings["cache"] = services.cache.ping
    results = await asyncio.gather(*(_check(name, ping) for name, ping in pings.items()))
    checks: Checks = dict(zip(pings, results, strict=True))
    if services.cache is None:
        checks["cache"] = "disabled"
    failing = [name for name, state in checks.items() if state == "failing"]
    if not failing:
        return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
    message = f"not ready: {', '.join(failing)} failing (unreachable, or the store full)"
    error = ErrorDetail(code="not_ready", message=message)
    unready = Unready(status="unavailable", checks=checks, error=error)
    return JSONResponse(unready.model_dump(exclude_none=True), 503)


async def _check(name: str, ping: Callable[[], Awaitable[bool]]) -> CheckState:
    try:
        ok = await asyncio.wait_for(ping(), PING_TIMEOUT_S)
    except Exception:
        log.warning("readiness: %s ping raised", name, exc_info=True)
        ok = False
    return "ok" if ok else "failing"
