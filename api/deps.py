"""Dependency aliases that routes take as parameters.

Every dependency is `async def`, even the trivial ones: FastAPI runs a plain `def` dependency in a
worker thread, a thread hop per dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import authenticate, current_caller
from api.errors import ApiError
from api.metrics import ApiMetrics
from api.openai.errors import OpenAIError
from api.ratelimit import enforce_rate_limit
from shared.batches import BatchService
from shared.config import Settings
from shared.factory import Services
from shared.files import FileService
from shared.key_service import KeyService
from shared.keys import Caller
from shared.logs import bind
from shared.service import ChatService
from shared.usage_report import UsageService


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_chat(request: Request) -> ChatService:
    services: Services = request.app.state.services  # one dependency level, not two
    return services.chat


async def get_batches(request: Request) -> BatchService:
    services: Services = request.app.state.services
    return services.batches


async def get_files(request: Request) -> FileService:
    services: Services = request.app.state.services
    if services.files is None:
        message = "file storage is not configured here (FILES_BUCKET)"
        raise OpenAIError(503, "files_unavailable", message)
    return services.files


async def get_usage_service(request: Request) -> UsageService:
    services: Services = request.app.state.services
    return services.usage


async def get_keys(request: Request) -> KeyService:
    services: Services = request.app.state.services
    if services.keys is None:
        raise ApiError(503, "unavailable", "run-time API keys are not configured here")
    return services.keys


async def bind_log_ids(request: Request) -> None:
    """Log records of a request about one job or batch carry its id (async: a sync dependency
    would run in a thread, whose context changes do not reach the request)."""
    params = request.path_params
    bind(job_id=params.get("job_id"), batch_id=params.get("batch_id"))


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
ChatDep = Annotated[ChatService, Depends(get_chat)]
BatchesDep = Annotated[BatchService, Depends(get_batches)]
FilesDep = Annotated[FileService, Depends(get_files)]
UsageDep = Annotated[UsageService, Depends(get_usage_service)]
KeysDep = Annotated[KeyService, Depends(get_keys)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
TenantDep = Annotated[str, Depends(authenticate)]
CallerDep = Annotated[Caller, Depends(current_caller)]
RateLimitedTenant = Annotated[str, Depends(enforce_rate_limit)]  # the tenant, within its budget
LogIds = Depends(bind_log_ids)
