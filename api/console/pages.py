"""The console's pages. Each page's live part is a fragment template that htmx asks for again every
few seconds (the same URL, with the `HX-Request` header), so a page updates without a reload."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from api.admin_auth import admin_for_key
from api.auth import caller_for_key, throttle_failures
from api.console.session import SessionDep, start_session
from api.console.views import render
from shared.adapters.aws.names import MAX_RECEIVE_COUNT
from shared.admin import AdminService, admin_batch, admin_job_detail, failing_webhook
from shared.admin_queries import BatchQuery, JobQuery
from shared.config import Settings
from shared.dead_letters import REDRIVE_LIMIT
from shared.errors import InvalidCursor, InvalidPeriod, NotFound, QueueUnavailable
from shared.models import BatchStatus, JobStatus
from shared.services import Services
from shared.usage_report import GroupBy

router = APIRouter(prefix="/console", include_in_schema=False)
PAGE = 50


async def get_admin(request: Request) -> AdminService:
    services: Services = request.app.state.services
    return services.admin


AdminDep = Annotated[AdminService, Depends(get_admin)]


def _live(request: Request, page: str, fragment: str) -> str:
    """The fragment alone for htmx's refresh, the whole page otherwise."""
    return fragment if request.headers.get("HX-Request") else page


@router.get("")
async def console_home() -> RedirectResponse:
    return RedirectResponse("/console/overview", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request) -> HTMLResponse:
    return render(request, "sign_in.html")


@router.post("/sign-in", response_model=None)
async def sign_in(request: Request, key: Annotated[str, Form(max_length=512)] = "") -> Response:
    """An admin key opens a session; a tenant's key is refused (403), a wrong one too (401)."""
    settings: Settings = request.app.state.settings
    key = key.strip()
    admins = [k.get_secret_value() for k in settings.admin_api_keys]
    admin = admin_for_key(key, admins) is not None if key else False
    if admin:
        await throttle_failures(request, failed=False)
    # a tenant's key, bootstrap or run-time (a wrong key counts against AUTH_FAILURE_LIMIT there)
    tenant = None if admin or not key else await caller_for_key(request, key)
    if not admin:
        message = (
            "That is a tenant's API key: only an operator key (ADMIN_API_KEYS) opens the console."
            if tenant is not None
            else "Not an operator key."
        )
        status = 403 if tenant is not None else 401
        return render(request, "sign_in.html", {"error": message}, status_code=status)
    response = RedirectResponse("/console/overview", status_code=303)
    start_session(request, response, key)
    return response


@router.get("/overview", response_class=HTMLResponse)
async def overview_page(request: Request, session: SessionDep, admin: AdminDep) -> HTMLResponse:
    overview = await admin.overview()
    name = _live(request, "overview.html", "_overview.html")
    return render(request, name, {"o": overview, "page": "overview"}, session=session)


def _instant(value: str | None) -> datetime | None:
    """A `datetime-local` input (no zone: UTC) or an ISO instant; None when empty or bad."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request, session: SessionDep, admin: AdminDep) -> HTMLResponse:
    params = request.query_params
    status = params.get("status") or None
    query = JobQuery(
        tenant=params.get("tenant") or None,
        status=JobStatus(status) if status and status in JobStatus.__members__ else None,
        batch_id=params.get("batch_id") or None,
        created_from=_instant(params.get("created_from")),
        created_to=_instant(params.get("created_to")),
    )
    error = None
    try:
        jobs, cursor = await admin.jobs(query, limit=PAGE, cursor=params.get("cursor") or None)
    except InvalidCursor:
        jobs, cursor, error = [], None, "That page link is out of date: start from the first."
    filters = {k: v for k, v in params.items() if k != "cursor" and v}
    context = {
        "jobs": jobs,
        "next_cursor": cursor,
        "filters": filters,
        "statuses": list(JobStatus),
        "error": error,
        "page": "jobs",
    }
    return render(request, _live(request, "jobs.html", "_jobs.html"), context, session=session)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request, job_id: str, session: SessionDep, admin: AdminDep
) -> HTMLResponse:
    try:
        job = await admin.job(job_id)
    except NotFound:
        return render(
            request,
            "error.html",
            {"message": f"No job {job_id}."},
            session=session,
            status_code=404,
        )
    context = {"job": job, "detail": admin_job_detail(job), "page": "jobs"}
    return render(request, _live(request, "job.html", "_job.html"), context, session=session)


@router.get("/batches", response_class=HTMLResponse)
async def batches_page(request: Request, session: SessionDep, admin: AdminDep) -> HTMLResponse:
    params = request.query_params
    status = params.get("status") or None
    query = BatchQuery(
        tenant=params.get("tenant") or None,
        status=BatchStatus(status) if status and status in BatchStatus.__members__ else None,
    )
    try:
        batches, cursor = await admin.batches_page(query, limit=PAGE, cursor=params.get("cursor"))
    except InvalidCursor:
        batches, cursor = [], None
    filters = {k: v for k, v in params.items() if k != "cursor" and v}
    context = {
        "batches": [admin_batch(b) for b in batches],
        "next_cursor": cursor,
        "filters": filters,
        "statuses": list(BatchStatus),
        "page": "batches",
    }
    name = _live(request, "batches.html", "_batches.html")
    return render(request, name, context, session=session)


@router.get("/batches/{batch_id}/results")
async def batch_results(batch_id: str, session: SessionDep, admin: AdminDep) -> StreamingResponse:
    batch = await admin.batch(batch_id)

    async def lines() -> AsyncIterator[bytes]:
        async for line in admin.batches.results(batch.tenant, batch_id):
            yield json.dumps(line, ensure_ascii=False).encode() + b"\n"

    headers = {"Content-Disposition": f'attachment; filename="{batch_id}.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(request: Request, session: SessionDep, admin: AdminDep) -> HTMLResponse:
    failing = [failing_webhook(s) for s in await admin.failing_webhooks(200)]
    context = {"failing": failing, "page": "webhooks"}
    name = _live(request, "webhooks.html", "_webhooks.html")
    return render(request, name, context, session=session)


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters_page(request: Request, session: SessionDep, admin: AdminDep) -> HTMLResponse:
    try:
        report, error = await admin.dead_letters.report(), None
    except QueueUnavailable as exc:
        report, error = None, f"The dead-letter queues could not be read: {exc}"
    context = {
        "report": report,
        "error": error,
        "max_receives": MAX_RECEIVE_COUNT,
        "redrive_limit": REDRIVE_LIMIT,
        "page": "dead-letters",
    }
    name = _live(request, "dead_letters.html", "_dead_letters.html")
    return render(request, name, context, session=session)


@router.get("/usage", response_class=HTMLResponse)
async def usage_page(request: Request, session: SessionDep, admin: AdminDep) -> HTMLResponse:
    params = request.query_params
    tenant = params.get("tenant") or None

    def day(name: str) -> date | None:
        try:
            return date.fromisoformat(params.get(name) or "")
        except ValueError:
            return None

    error = None
    try:
        charts = {g.value: await admin.usage(day("from"), day("to"), g, tenant) for g in GroupBy}
    except InvalidPeriod as exc:
        error, charts = (
            str(exc),
            {g.value: await admin.usage(None, None, g, tenant) for g in GroupBy},
        )
    daily = charts["day"]
    data = {g: report.model_dump(mode="json", by_alias=True) for g, report in charts.items()}
    context = {
        "usage": daily,
        "chart_data": json.dumps(data).replace("<", "\\u003c"),  # safe inside <script>
        "tenant": tenant,
        "tenants": await admin.known_tenants(),
        "error": error,
        "page": "usage",
    }
    return render(request, "usage.html", context, session=session)
