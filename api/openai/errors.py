"""OpenAI's error shape for the `/openai/v1` surface: `{"error": {"message", "type", "param",
"code"}}`, with the status codes the `openai` SDK maps to its exception classes.

The app's exception handlers (api/errors.py) render every error of a path under `PREFIX` through
`openai_error`; routes of this surface raise `OpenAIError` for answers only this dialect has
(`model_not_found`, `wait_timeout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

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


class OpenAIErrorDetail(BaseModel):
    message: str
    type: ErrorType
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """The body of every error answer under /openai/v1."""

    error: OpenAIErrorDetail


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
