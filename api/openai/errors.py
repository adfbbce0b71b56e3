"""OpenAI's error shape for the `/openai/v1` surface: `{"error": {"message", "type", "param",
"code"}}`, with the status codes the `openai` SDK maps to its exception classes.

The app's exception handlers (api/errors.py) render every error of a path under `PREFIX` through
`openai_error`; routes of this surface raise `OpenAIError` for answers only this dialect has
(`model_not_found`, `wait_timeout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.openai.shape import Shape

PREFIX = "/openai/"

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "server_error",
]
_TYPES: dict[int, ErrorType] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    429: "rate_limit_error",
}


class OpenAIErrorDetail(Shape):
    """What went wrong: `param` names the request field at fault, `code` the reason."""

    message: str
    """What went wrong, for people."""
    type: ErrorType
    """OpenAI's error type (`invalid_request_error`, `rate_limit_error`, …)."""
    param: str | None = None
    """The request field at fault, if one is."""
    code: str | None = None
    """Why, for programs (`model_not_found`, `wait_timeout`, `rate_limited`, …)."""


class OpenAIErrorResponse(Shape):
    """The body of every error answer under /openai/v1."""

    error: OpenAIErrorDetail
    """The error."""


class OpenAIError(HTTPException):
    """An answer of this dialect: status, `code` and the request field at fault (`param`)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, dict(headers) if headers else None)
        self.code = code
        self.param = param


def documented(*answers: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for a route's error answers: (status, description)."""
    return {status: {"model": OpenAIErrorResponse, "description": text} for status, text in answers}


def in_dialect(path: str) -> bool:
    return path.startswith(PREFIX)


def dialect_status(status: int) -> int:
    """OpenAI answers a malformed request 400 (the SDK's BadRequestError), not 422."""
    return 400 if status == 422 else status


def error_type(status: int) -> ErrorType:
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def openai_error(
    status: int,
    code: str | None,
    message: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    status = dialect_status(status)
    detail = OpenAIErrorDetail(message=message, type=error_type(status), param=param, code=code)
    body = OpenAIErrorResponse(error=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)
