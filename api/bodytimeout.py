"""A request body that stops arriving: 408 after HTTP_BODY_TIMEOUT_S without a byte, and the
connection closes (`Connection: close`).

The deadline runs only while the app waits for the body: a slow app is never the client's fault,
and once the body is complete, later `receive` calls (waiting for a disconnect during a long
poll or a stream) wait as long as they like.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_complete = False

        async def receive_in_time() -> Message:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise _timed_out(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        await self.app(scope, receive_in_time, send)


def _timed_out(timeout_s: float) -> ApiError:
    return ApiError(
        408,
        "request_timeout",
        f"the request body stopped arriving: nothing for {timeout_s:g} s",
        headers={"Connection": "close"},
    )
