"""create_app: the FastAPI application. Services are built and started in the lifespan."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from api.auth import anonymous
from api.bodylimit import BodyLimitMiddleware
from api.bodytimeout import BodyTimeoutMiddleware
from api.console import install_console
from api.docs_ui import install_docs
from api.errors import ErrorResponse, install_error_handlers
from api.metrics import ApiMetrics, MetricsMiddleware
from api.metrics import router as metrics_router
from api.openai.files import FILES_MAX_BYTES, FORM_SLACK_BYTES
from api.openai.router import router as openai_router
from api.openapi import install_openapi, operation_id
from api.ratelimit import TenantRateLimiter
from api.requestid import install_request_id
from api.routes import admin, admin_keys, batches, health, job_events, jobs, usage, webhooks
from shared.config import ANONYMOUS_TENANT, Settings
from shared.factory import ServiceFactory

log = logging.getLogger(__name__)

DESCRIPTION = """\
Asynchronous LLM chat jobs. Submit a chat request to `POST /v1/jobs`: a cached answer comes back
at once (200), otherwise the job is queued (202) and you poll `GET /v1/jobs/{id}?wait=…` for it.
Authenticate with `Authorization: Bearer <key>`. Every error answers
`{"error": {"code", "message"}}`. Send `X-Request-ID` (up to 128 of `A-Z a-z 0-9 . _ : / + = @ -`)
to tie a request to the service's logs; every response echoes it, or the id it was given instead.
"""


def _version() -> str:
    try:
        return version("chatjobs")
    except PackageNotFoundError:
        return "0.0.0"


def check_auth_config(settings: Settings) -> None:
    """Lambda must never run open; locally, no keys (API_KEYS nor ADMIN_API_KEYS) means one
    anonymous tenant."""
    if not anonymous(settings):
        return
    if settings.on_lambda:
        raise RuntimeError(
            "API_KEYS is empty, and so is ADMIN_API_KEYS: refusing to serve on Lambda without "
            "API keys"
        )
    log.warning(
        "API_KEYS is empty, and so is ADMIN_API_KEYS: serving every caller as the single "
        "tenant %r without authentication",
        ANONYMOUS_TENANT,
    )


def create_app(factory: ServiceFactory | None = None) -> FastAPI:
    factory = factory or ServiceFactory()
    settings = factory.settings
    check_auth_config(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await factory.start(consume=settings.resolved_queue == "inprocess")
        app.state.services = services
        # what start-up made lives as long as the process: keep it out of the collector's scans
        gc.freeze()
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title="chatjobs",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # install_docs serves /docs from the package's own assets
        redoc_url=None,  # ReDoc would load its script and fonts from CDNs
        generate_unique_id_function=operation_id,
        responses={500: {"model": ErrorResponse, "description": "Unexpected (`internal_error`)"}},
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    rate_window = factory.build_rate_window()
    app.state.limiter = TenantRateLimiter(settings.rate_limit, rate_window)
    app.state.auth_throttle = TenantRateLimiter(settings.auth_failure_limit, rate_window)
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        overrides={
            "/v1/batches": settings.batch_max_bytes,
            "/openai/v1/files": FILES_MAX_BYTES + FORM_SLACK_BYTES,
        },
    )
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.http_body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_request_id(app)  # outermost: every answer carries the id
    app.include_router(jobs.router)
    app.include_router(job_events.router)
    app.include_router(batches.router)
    app.include_router(webhooks.router)
    app.include_router(usage.router)
    app.include_router(admin_keys.router)
    app.include_router(openai_router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(metrics_router)
    install_openapi(app, settings)
    install_docs(app)
    install_console(app)
    return app
