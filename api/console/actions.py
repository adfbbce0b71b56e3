"""The console's actions: HTML forms POSTed with the session's CSRF token, each a call of
AdminService (the same as `/v1/admin/...`), answered with a redirect back to the page and a notice
saying what happened (or why not: a conflict, overload or a missing record)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from api.console.pages import AdminDep
from api.console.session import CheckedSessionDep, end_session
from shared.dead_letters import Redriven
from shared.errors import ChatJobsError

router = APIRouter(prefix="/console", include_in_schema=False)
T = TypeVar("T")


def _back(request: Request, fallback: str, notice: str) -> RedirectResponse:
    """To the page the form was on (a /console path of this site only), with the notice."""
    referer = urlsplit(request.headers.get("referer", ""))
    path = referer.path if referer.path.startswith("/console/") else fallback
    query = "&".join(p for p in referer.query.split("&") if p and not p.startswith("notice="))
    target = f"{path}?{query + '&' if query else ''}{urlencode({'notice': notice})}"
    return RedirectResponse(target, status_code=303)


async def _done(
    request: Request,
    fallback: str,
    action: Callable[[], Awaitable[T]],
    success: str | Callable[[T], str],
) -> RedirectResponse:
    try:
        result = await action()
    except ChatJobsError as exc:  # a conflict, overload, a missing record: say why
        return _back(request, fallback, f"Not done: {exc}")
    return _back(request, fallback, success if isinstance(success, str) else success(result))


@router.post("/jobs/{job_id}/cancel")
async def console_cancel_job(
    request: Request, job_id: str, session: CheckedSessionDep, admin: AdminDep
) -> RedirectResponse:
    return await _done(
        request, f"/console/jobs/{job_id}", lambda: admin.cancel_job(job_id), f"{job_id} cancelled."
    )


@router.post("/jobs/{job_id}/retry")
async def console_retry_job(
    request: Request, job_id: str, session: CheckedSessionDep, admin: AdminDep
) -> RedirectResponse:
    return await _done(
        request,
        f"/console/jobs/{job_id}",
        lambda: admin.retry_job(job_id),
        f"{job_id} queued again.",
    )


@router.post("/webhooks/{subject_id}/redeliver")
async def console_redeliver(
    request: Request, subject_id: str, session: CheckedSessionDep, admin: AdminDep
) -> RedirectResponse:
    return await _done(
        request,
        "/console/webhooks",
        lambda: admin.redeliver_webhook(subject_id),
        f"The webhook of {subject_id} goes out again now.",
    )


@router.post("/batches/{batch_id}/cancel")
async def console_cancel_batch(
    request: Request, batch_id: str, session: CheckedSessionDep, admin: AdminDep
) -> RedirectResponse:
    return await _done(
        request,
        "/console/batches",
        lambda: admin.cancel_batch(batch_id),
        f"{batch_id}: its queued jobs are cancelled.",
    )


@router.post("/dead-letters/{queue}/redrive")
async def console_redrive(
    request: Request, queue: str, session: CheckedSessionDep, admin: AdminDep
) -> RedirectResponse:
    def said(done: Redriven) -> str:
        left = f"; {done.remaining} left, redrive again" if done.remaining else ""
        return f"{done.moved} moved from the dead-letter queue back to {queue}{left}."

    return await _done(
        request, "/console/dead-letters", lambda: admin.dead_letters.redrive(queue), said
    )


@router.post("/sign-out")
async def console_sign_out(session: CheckedSessionDep) -> RedirectResponse:
    response = RedirectResponse("/console/sign-in", status_code=303)
    end_session(response)
    return response
