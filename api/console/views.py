"""Rendering for the console: the templates, the filters they use, and the headers every page
carries (a Content-Security-Policy that allows only the console's own scripts and styles)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.console.session import CSRF_FIELD, CSRF_HEADER, ConsoleSession
from shared.models import utcnow

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent.parent / "static" / "console"
STATIC_PATH = "/console/static"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def ago(value: datetime | None) -> str:
    """`12 s`, `4 min`, `3 h`, `2 d` since `value`."""
    if value is None:
        return "—"
    seconds = max((utcnow() - value).total_seconds(), 0)
    return seconds_text(seconds)


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters.update(ago=ago, when=when, percent=percent, seconds=seconds_text)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    session: ConsoleSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    values = {
        "static": STATIC_PATH,
        "csrf": session.csrf if session else "",
        "csrf_field": CSRF_FIELD,
        "csrf_header": CSRF_HEADER,
        "notice": request.query_params.get("notice"),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    response.headers.update(HEADERS)
    return response
