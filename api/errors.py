"""One error envelope for every failure: `{"error": {"code", "message", "fields"?}}`."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from asgi_correlation_id import correlation_id
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from api.jsonbody import is_json
from api.openai.errors import OpenAIError, in_dialect, openai_error
from api.requestid import HEADER as REQUEST_ID
from shared.errors import (
    BudgetExceeded,
    ChatJobsError,
    Conflict,
    InvalidWebhookUrl,
    KeyLimitExceeded,
    KeyRateLimited,
    NotFound,
    Overloaded,
    QueueUnavailable,
    StoreFull,
    UnknownModel,
)

log = logging.getLogger(__name__)

QUEUE_RETRY_AFTER_S = 5
STORE_FULL_RETRY_AFTER_S = 30  # room comes back when an operator frees it, not in a moment
_LOCATIONS = ("body", "query", "path", "header", "cookie")

ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "request_timeout",  # the request body stopped arriving (HTTP_BODY_TIMEOUT_S)
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_request",  # the request is malformed; `fields` names what is wrong
    "rate_limited",
    "budget_exceeded",  # the key's monthly budget has no room; it resets at the next UTC month
    "queue_unavailable",  # the queue could not take the job; retry after Retry-After
    "overloaded",  # more jobs are waiting than MAX_QUEUED_JOBS; retry after Retry-After
    "store_full",  # the store's disk is full: nothing was stored; retry after Retry-After
    "unavailable",
    "not_ready",  # /readyz: a dependency is unreachable
    "internal_error",
]
_CODES: dict[int, ErrorCode] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def code_for(status: int) -> ErrorCode:
    return _CODES.get(status) or ("bad_request" if status < 500 else "internal_error")


class FieldError(BaseModel):
    field: str = Field(description="Where: a dotted path into the body, or a parameter name.")
    message: str


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str
    fields: list[FieldError] | None = Field(None, description="For `invalid_request`.")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


class ApiError(HTTPException):
    """An HTTP error with a machine-readable `code` (and optional field errors)."""

    def __init__(
        self,
        status_code: int,
        code: ErrorCode,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        fields: list[FieldError] | None = None,
    ) -> None:
        super().__init__(status_code, message, dict(headers) if headers else None)
        self.code = code
        self.fields = fields


def rate_limited(reason: str, wait_s: float) -> ApiError:
    """429 `rate_limited` saying why and how long to wait, in the message and in Retry-After."""
    seconds = math.ceil(wait_s)
    message = f"{reason}; retry in {seconds} s"
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(seconds)})


def error_response(
    status_code: int,
    code: ErrorCode,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    fields: list[FieldError] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, fields=fields))
    content = body.model_dump(exclude_none=True)
    return JSONResponse(content, status_code=status_code, headers=headers)


def respond(
    request: Request,
    status_code: int,
    code: ErrorCode,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    fields: list[FieldError] | None = None,
) -> JSONResponse:
    """The error answer in the dialect of the request's path: OpenAI's under /openai/."""
    if in_dialect(request.url.path):
        param = fields[0].field if fields else None
        return openai_error(status_code, code, message, param=param, headers=headers)
    return error_response(status_code, code, message, headers=headers, fields=fields)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if isinstance(exc, OpenAIError):
        return openai_error(status, exc.code, exc.detail, param=exc.param, headers=exc.headers)
    code: ErrorCode = getattr(exc, "code", None) or code_for(status)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    fields: list[FieldError] | None = getattr(exc, "fields", None)
    headers = dict(exc.headers or {})
    if status == 405:  # Starlette names only the first route on the path; name them all
        headers["Allow"] = ", ".join(allowed_methods(request))
        message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    return respond(request, status, code, message, headers=headers, fields=fields)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on the request's path (`iter_route_contexts` is FastAPI's
    public view of the routes behind included routers)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    json_body = is_json(request.headers.get("content-type"))
    fields = [_field_error(error, json_body) for error in exc.errors()]
    message = f"{fields[0].field}: {fields[0].message}" if fields else "invalid request"
    if len(fields) > 1:
        message += f" (and {len(fields) - 1} more)"
    return respond(request, 422, "invalid_request", message, fields=fields)


def _field_error(error: Mapping[str, Any], json_body: bool) -> FieldError:
    loc = [str(part) for part in error.get("loc", ())]
    whole_body = loc == ["body"] or error.get("type") == "json_invalid"
    path = loc[1:] if loc and loc[0] in _LOCATIONS else loc
    field = "body" if whole_body else _printable(".".join(path)) or "body"
    return FieldError(field=field, message=_printable(_explain(error, whole_body, json_body)))


def _explain(error: Mapping[str, Any], whole_body: bool, json_body: bool) -> str:
    kind = error.get("type")
    if kind == "json_invalid":
        return f"request body is not valid JSON: {error.get('ctx', {}).get('error', '?')}"
    if whole_body and kind == "missing":
        return "a JSON request body is required"
    if whole_body and not json_body:
        return "Content-Type must be application/json"
    if kind == "extra_forbidden":
        return "not a field this service takes: it cannot honour it"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def _printable(text: str, limit: int = 200) -> str:
    """Echoed client input must be valid UTF-8 (no lone surrogates) and short."""
    clean = text.encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[:limit] + "…"


@dataclass(frozen=True)
class DomainAnswer:
    """How the API answers a domain error: status, code, and what the answer may say."""

    status: int
    code: ErrorCode
    message: str | None = None  # a fixed message, when the error's own text is internal
    field: str | None = None  # the request field at fault, when the error does not name one
    retry_after_s: int | None = None  # when the error does not say
    log_level: int | None = None  # logged at this level (an operator should know), else not


DOMAIN_ANSWERS: dict[type[ChatJobsError], DomainAnswer] = {
    NotFound: DomainAnswer(404, "not_found"),
    Conflict: DomainAnswer(409, "conflict"),
    InvalidWebhookUrl: DomainAnswer(422, "invalid_request", field="webhook_url"),
    UnknownModel: DomainAnswer(422, "invalid_request"),
    QueueUnavailable: DomainAnswer(
        503,
        "queue_unavailable",
        "the job queue is unavailable; retry later",
        retry_after_s=QUEUE_RETRY_AFTER_S,
        log_level=logging.WARNING,
    ),
    Overloaded: DomainAnswer(503, "overloaded"),
    BudgetExceeded: DomainAnswer(429, "budget_exceeded"),
    KeyRateLimited: DomainAnswer(429, "rate_limited"),
    KeyLimitExceeded: DomainAnswer(429, "rate_limited"),
    StoreFull: DomainAnswer(
        503,
        "store_full",
        "the job store is full; nothing was stored; retry later",
        retry_after_s=STORE_FULL_RETRY_AFTER_S,
        log_level=logging.ERROR,
    ),
}


def answer_for(error: type[ChatJobsError]) -> DomainAnswer | None:
    for kind in error.__mro__:
        if kind in DOMAIN_ANSWERS:
            return DOMAIN_ANSWERS[kind]
    return None


async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChatJobsError)
    answer = answer_for(type(exc))
    if answer is None:
        return await on_unexpected(request, exc)
    if answer.log_level is not None:
        log.log(answer.log_level, "%s: %s", answer.code.replace("_", " "), exc)
    message = answer.message or _printable(str(exc)) or HTTPStatus(answer.status).phrase
    field = getattr(exc, "field", None) or answer.field
    fields = [FieldError(field=field, message=message)] if field else None
    retry_after = getattr(exc, "retry_after_s", None) or answer.retry_after_s
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return respond(request, answer.status, answer.code, message, headers=headers, fields=fields)


async def on_client_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away mid-request (e.g. a dropped upload): nothing to answer, no fault."""
    log.info("the client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette answers these outside every middleware: add the id the middleware would have
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    request_id = correlation_id.get()
    headers = {REQUEST_ID: request_id} if request_id else None
    return respond(request, 500, "internal_error", "internal server error", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ChatJobsError, on_domain_error)
    app.add_exception_handler(ClientDisconnect, on_client_disconnect)
    app.add_exception_handler(Exception, on_unexpected)


HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}},
}
_ERROR_HEADERS = {401: ["WWW-Authenticate"], 429: ["Retry-After"], 503: ["Retry-After"]}
_DESCRIPTIONS = {
    401: "No valid API key (`unauthorized`)",
    404: "No such resource for this key's tenant (`not_found`)",
    409: "Conflicts with the resource's state (`conflict`)",
    413: "The body is over the size limit (`payload_too_large`)",
    415: "Unsupported Content-Type (`unsupported_media_type`)",
    422: "The request is malformed; `fields` names what (`invalid_request`)",
    429: "Over the tenant's RATE_LIMIT or the key's rpm, tpm or max_in_flight (`rate_limited`),"
    " or over the key's monthly budget (`budget_exceeded`, until the next UTC month); retry"
    " after Retry-After",
    503: "The queue could not take the work (`queue_unavailable`), more jobs are waiting "
    "than MAX_QUEUED_JOBS (`overloaded`), or the store's disk is full (`store_full`); retry "
    "after Retry-After",
}


def documented(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error answers a route can give."""
    return {code: _documented(code) for code in status_codes}


def _documented(code: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": ErrorResponse,
        "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
    }
    if code in _ERROR_HEADERS:
        entry["headers"] = {name: HEADERS[name] for name in _ERROR_HEADERS[code]}
    return entry
