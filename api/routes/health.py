"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import ServicesDep
from api.errors import ErrorResponse

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 2.0

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health)
async def read_health() -> Health:
    """Liveness: the process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorResponse, "description": "A dependency is unreachable"}},
)
async def read_readiness(services: ServicesDep) -> JSONResponse:
    """Readiness: the store, the queue and the cache all answer."""
    pings: dict[str, Callable[[], Awaitable[bool]]] = {
        "store": services.store.ping,
        "queue": services.queue.ping,
    }
    if services.cache is not None:
        pings["cache"] = services.cache.ping
    results = await asyncio.gather(*(_check(name, ping) for name, ping in pings.items()))
    checks = dict(zip(pings, results, strict=True))
    if services.cache is None:
        checks["cache"] = "disabled"
    failing = [name for name, state in checks.items() if state == "failing"]
    if not failing:
        return JSONResponse(Readiness(status="ready", checks=checks).model_dump())
    message = f"not ready: {', '.join(failing)} unreachable"
    error = {"code": "not_ready", "message": message}
    return JSONResponse({"status": "unavailable", "checks": checks, "error": error}, 503)


async def _check(name: str, ping: Callable[[], Awaitable[bool]]) -> str:
    try:
        ok = await asyncio.wait_for(ping(), PING_TIMEOUT_S)
    except Exception:
        log.warning("readiness: %s ping raised", name, exc_info=True)
        ok = False
    return "ok" if ok else "failing"
