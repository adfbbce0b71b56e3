"""The pieces behind HTTP_MAX_CONNECTIONS and HTTP_BODY_TIMEOUT_S, without a server (the e2e
tests in tests/e2e/test_slow_clients.py drive them through a real uvicorn)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from api.bodytimeout import BodyTimeoutMiddleware
from api.connections import Connections
from api.errors import ApiError


class Transport(asyncio.BaseTransport):
    """A transport that only records being closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def opened(connections: Connections, count: int) -> list[tuple[object, Transport]]:
    made = [(object(), Transport()) for _ in range(count)]
    for conn, transport in made:
        assert connections.admit(conn, transport)
    return made


def test_past_the_cap_the_connection_idle_longest_is_closed() -> None:
    connections = Connections(limit=3)
    (a, a_t), (b, b_t), (_, c_t) = opened(connections, 3)
    connections.busy(a)
    connections.busy(b)
    connections.idle(b, b_t)  # b answered after c opened: c has been idle longer
    new, new_t = object(), Transport()
    assert connections.admit(new, new_t)
    assert (a_t.closed, b_t.closed, c_t.closed) == (False, False, True)
    assert len(connections) == 3


def test_when_every_connection_has_a_request_in_the_app_a_new_one_is_refused() -> None:
    connections = Connections(limit=2)
    made = opened(connections, 2)
    for conn, _ in made:
        connections.busy(conn)
    assert not connections.admit(object(), Transport())
    assert not any(transport.closed for _, transport in made)
    connections.forget(made[0][0])  # a client hung up
    assert connections.admit(object(), Transport())


def receiving(*messages: Message) -> Receive:
    """`messages`, then nothing for ever (a client that stopped sending)."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def no_send(message: Message) -> None:
    raise AssertionError("nothing is sent here")


SCOPE: Scope = {"type": "http", "path": "/v1/jobs", "headers": []}


async def test_a_body_that_stops_arriving_is_a_408_that_closes_the_connection() -> None:
    async def reads_the_body(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass

    app = BodyTimeoutMiddleware(reads_the_body, timeout_s=0.05)
    first = {"type": "http.request", "body": b"{", "more_body": True}
    with pytest.raises(ApiError) as raised:
        await app(SCOPE, receiving(first), no_send)
    assert raised.value.status_code == 408
    assert raised.value.code == "request_timeout"
    assert raised.value.headers == {"Connection": "close"}


async def test_once_the_body_is_complete_receive_waits_as_long_as_the_app_likes() -> None:
    waited = False

    async def long_poll(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal waited
        await receive()
        with pytest.raises(TimeoutError):  # the app's own deadline, not the middleware's
            async with asyncio.timeout(0.2):
                await receive()  # waiting for a disconnect
        waited = True

    app = BodyTimeoutMiddleware(long_poll, timeout_s=0.05)
    await app(SCOPE, receiving({"type": "http.request", "body": b"", "more_body": False}), no_send)
    assert waited
