"""Strict JSON request bodies: UTF-8 only, and every body JSON cannot take answers 422.

Starlette's `Request.json()` lets anything but a `JSONDecodeError` escape (a body that is not UTF-8,
an integer longer than Python converts, nesting deeper than the recursion limit), and FastAPI turns
those into an undocumented 400. `StrictJsonRoute` gives routes a request whose `json()` raises
`JSONDecodeError` for all of them, which FastAPI reports as a 422 `json_invalid` like any other
malformed body; the batch parser uses `loads` directly. `media_type` and `is_json` read a
Content-Type for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def loads(body: bytes) -> Any:
    """Parse a JSON document sent as UTF-8 (RFC 8259; a leading BOM is ignored). Raises
    `json.JSONDecodeError` for everything it refuses."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not UTF-8", "", exc.start) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise json.JSONDecodeError(str(exc), "", 0) from None


def media_type(content_type: str | None) -> str:
    """A Content-Type's `type/subtype`, lower case, without its parameters ('' when absent)."""
    return (content_type or "").split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """`application/json` or any `+json` type, whatever the parameters."""
    media = media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def reason(exc: json.JSONDecodeError) -> str:
    """What to tell the client: the parser's message with its position, not the document."""
    return str(exc) if exc.doc else exc.msg


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handlers parse JSON bodies with `loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_json_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_json_handler
