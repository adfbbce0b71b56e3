"""`python -m api`'s connections: deadlines for slow clients and a cap on open connections.

uvicorn closes a connection left idle after a response (`timeout_keep_alive`), but not one that
never sends a request, never finishes its headers, or stops sending a body nobody reads any more:
each holds a socket for good, and enough of them exhaust the process's open files. So
`guarded_protocol` returns uvicorn's httptools protocol with

- a head deadline: a request's line and headers must arrive within HTTP_HEADER_TIMEOUT_S of the
  connection opening (or of the request's first byte, after a response);
- a leftover-body deadline: when the app has answered before reading the whole body (a 404, a
  405), the rest must arrive within HTTP_BODY_TIMEOUT_S (the app's own reads time out in
  `api.bodytimeout`);
- a cap of HTTP_MAX_CONNECTIONS open connections: a new one past it closes the connection idle
  longest (no request in the app), as nginx reuses keep-alive connections; when every one has a
  request in the app, the new one is answered 503 and closed.

It is passed as `uvicorn.run(http=…)`, the documented way to choose the protocol class, and
overrides only asyncio.Protocol's methods and httptools' parser callbacks, each calling uvicorn's
own, plus `on_response_complete`, which uvicorn calls when a response has been sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import resource
import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0
UNLIMITED_FILES_CAP = 32_768  # the cap when the open-file limit is unlimited


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int


def default_max_connections() -> int:
    """Half the process's open-file limit: the rest stays for the store, Redis, LLM calls."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_FILES_CAP
    return max(1, soft // 2)


def _overloaded_response() -> bytes:
    body = json.dumps(
        {"error": {"code": "overloaded", "message": "too many open connections; retry shortly"}}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"retry-after: 1\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


OVERLOADED = _overloaded_response()


class Connections:
    """One server's open connections. Those with no request in the app are idle, kept in the
    order they became idle, so the one idle longest is closed first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: set[object] = set()
        self._idle: dict[object, asyncio.BaseTransport] = {}
        self._warned_at = -math.inf

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: object, transport: asyncio.BaseTransport) -> bool:
        if len(self._open) >= self.limit and not self._close_longest_idle():
            self._warn_full()
            return False
        self._open.add(conn)
        self._idle[conn] = transport
        return True

    def busy(self, conn: object) -> None:
        self._idle.pop(conn, None)

    def idle(self, conn: object, transport: asyncio.BaseTransport) -> None:
        if conn in self._open:
            self._idle.pop(conn, None)
            self._idle[conn] = transport

    def forget(self, conn: object) -> None:
        self._open.discard(conn)
        self._idle.pop(conn, None)

    def _close_longest_idle(self) -> bool:
        if not self._idle:
            return False
        conn, transport = next(iter(self._idle.items()))
        self.forget(conn)
        transport.close()
        return True

    def _warn_full(self) -> None:
        if time.monotonic() - self._warned_at >= WARN_EVERY_S:
            self._warned_at = time.monotonic()
            log.warning(
                "%d connections, each with a request in progress (HTTP_MAX_CONNECTIONS): "
                "answering new ones 503",
                self.limit,
            )


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with `limits`; one class per server (it holds the server's
    connections)."""
    connections = Connections(limits.max_connections)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        guard_transport: asyncio.Transport
        guard_deadline: asyncio.TimerHandle | None = None
        guard_in_app = 0  # requests handed to the app and not yet answered
        guard_body_pending = False  # the current request's body has not all arrived

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.guard_transport = transport
            if not connections.admit(self, transport):
                transport.write(OVERLOADED)
                transport.close()
                return
            self._guard_arm(limits.header_timeout_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard_disarm()
            connections.forget(self)
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.guard_deadline is None:
                self._guard_arm(limits.header_timeout_s)

        def on_headers_complete(self) -> None:
            self._guard_disarm()
            self.guard_in_app += 1
            self.guard_body_pending = True
            connections.busy(self)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.guard_body_pending = False
            if self.guard_in_app == 0:
                self._guard_disarm()  # the leftover body arrived
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.guard_in_app -= 1
            if self.guard_in_app == 0:
                connections.idle(self, self.guard_transport)
                if self.guard_body_pending:
                    self._guard_arm(limits.body_timeout_s)

        def _guard_arm(self, timeout_s: float) -> None:
            self._guard_disarm()
            loop = asyncio.get_running_loop()
            self.guard_deadline = loop.call_later(timeout_s, self._guard_expired)

        def _guard_disarm(self) -> None:
            if self.guard_deadline is not None:
                self.guard_deadline.cancel()
                self.guard_deadline = None

        def _guard_expired(self) -> None:
            self.guard_deadline = None
            log.debug("closing a connection that did not finish its request in time")
            self.guard_transport.close()

    return GuardedHttpToolsProtocol
