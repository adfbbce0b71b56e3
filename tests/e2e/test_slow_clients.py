"""Slow and idle clients against a real `python -m api`, over raw loopback sockets: connections
that never finish a request are closed within HTTP_HEADER_TIMEOUT_S / HTTP_BODY_TIMEOUT_S /
HTTP_KEEP_ALIVE_S, connections past HTTP_MAX_CONNECTIONS (or half the open-file limit) close the
idle ones, and /healthz answers throughout."""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.conftest import Api, Launcher

pytestmark = pytest.mark.e2e

TIMEOUT_S = 1
SLACK_S = 3.0  # a loaded machine's scheduling, on top of the configured timeout
SHORT = {
    "API_KEYS": "t1:k1",
    "HTTP_HEADER_TIMEOUT_S": str(TIMEOUT_S),
    "HTTP_BODY_TIMEOUT_S": str(TIMEOUT_S),
    "HTTP_KEEP_ALIVE_S": str(TIMEOUT_S),
}
LONG_HEADER_TIMEOUT = {"HTTP_HEADER_TIMEOUT_S": "120"}  # only the cap closes idle connections
POST_HEAD = (
    b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
)
KEY = b"Authorization: Bearer k1\r\n"


def connect(api: Api, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(api.env["PORT"])), timeout=5)
    sock.sendall(data)
    sock.setblocking(False)
    return sock


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (what it sent before is read and dropped)."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    return True


@dataclass
class Watch:
    """Reads every socket until the server closes it, while asking /healthz four times a second."""

    api: Api
    sockets: dict[str, socket.socket]
    trickle: str | None = None  # the socket sent one more header byte every 0.3 s
    closed_at: dict[str, float] = field(default_factory=dict)
    received: dict[str, bytes] = field(default_factory=dict)
    health: list[int | str] = field(default_factory=list)

    def run(self, seconds: float) -> None:
        selector = selectors.DefaultSelector()
        for name, sock in self.sockets.items():
            selector.register(sock, selectors.EVENT_READ, name)
            self.received[name] = b""
        start = next_probe = next_byte = time.monotonic()
        with httpx.Client(base_url=self.api.url, timeout=2, trust_env=False) as probe:
            while len(self.closed_at) < len(self.sockets) and time.monotonic() - start < seconds:
                for key, _ in selector.select(timeout=0.05):
                    self._read(selector, key.data, time.monotonic() - start)
                now = time.monotonic()
                if now >= next_probe:
                    next_probe = now + 0.25
                    self.health.append(_healthz(probe))
                if self.trickle and self.trickle not in self.closed_at and now >= next_byte:
                    next_byte = now + 0.3
                    self._send_byte(selector, self.trickle, now - start)
        selector.close()

    def _read(self, selector: selectors.BaseSelector, name: str, at: float) -> None:
        try:
            data = self.sockets[name].recv(65536)
        except ConnectionError:
            data = b""
        self.received[name] += data
        if not data:
            self.closed_at[name] = at
            selector.unregister(self.sockets[name])

    def _send_byte(self, selector: selectors.BaseSelector, name: str, at: float) -> None:
        try:
            self.sockets[name].send(b"x")
        except OSError:
            self._read(selector, name, at)


def _healthz(client: httpx.Client) -> int | str:
    try:
        return client.get("/healthz").status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


@pytest.fixture
def short_timeouts(launcher: Launcher) -> Api:
    return launcher.api(**SHORT)


def test_idle_and_slow_connections_are_closed_within_the_timeouts(short_timeouts: Api) -> None:
    api = short_timeouts
    watch = Watch(
        api,
        {
            "idle": connect(api),
            "half headers": connect(api, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
            "trickled headers": connect(api, b"GET /healthz HTTP/1.1\r\nX-Slow: "),
            "half body": connect(api, POST_HEAD % b"/v1/jobs" + KEY + b"\r\n{"),
            "unread body": connect(api, POST_HEAD % b"/v1/nowhere" + b"\r\n{"),
            "keep-alive": connect(api, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        },
        trickle="trickled headers",
    )
    watch.run(seconds=TIMEOUT_S + SLACK_S + 2)

    assert set(watch.closed_at) == set(watch.sockets), f"still open: {watch.closed_at}"
    for name, at in watch.closed_at.items():
        assert TIMEOUT_S - 0.1 <= at <= TIMEOUT_S + SLACK_S, (name, at)
    assert watch.received["half body"].startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in watch.received["half body"]
    assert watch.received["unread body"].startswith(b"HTTP/1.1 404 ")  # answered, then closed
    assert watch.received["keep-alive"].startswith(b"HTTP/1.1 200 ")
    for name in ("idle", "half headers", "trickled headers"):
        assert watch.received[name] == b"", name
    assert len(watch.health) >= 3 and set(watch.health) == {200}, watch.health


def test_connections_past_the_cap_close_the_ones_idle_longest(launcher: Launcher) -> None:
    api = launcher.api(HTTP_MAX_CONNECTIONS="20", **LONG_HEADER_TIMEOUT)
    idle = [connect(api) for _ in range(60)]
    half_sent = [connect(api, b"GET /healthz HTTP/1.1\r\n") for _ in range(20)]
    with api.client() as client:
        statuses = [client.get("/healthz").status_code for _ in range(10)]
    assert statuses == [200] * 10
    sockets = idle + half_sent
    time.sleep(1)
    closed = [is_closed(sock) for sock in sockets]
    assert sum(closed) >= len(sockets) - 20
    first_open = closed.index(False)
    assert not any(closed[first_open:]), "the oldest connections close first"
    for sock in sockets:
        sock.close()


def test_idle_connections_past_the_open_file_limit_leave_healthz_answering(
    launcher: Launcher,
) -> None:
    """The reported failure: 600 idle connections to an API with `ulimit -n 512` made every
    /healthz fail. By default at most half the open-file limit is held by connections."""
    api = launcher.api("api", None, 200, **LONG_HEADER_TIMEOUT)  # open-file limit 200
    idle = [connect(api) for _ in range(300)]
    statuses = []
    with httpx.Client(base_url=api.url, timeout=5, trust_env=False) as client:
        for _ in range(10):
            statuses.append(_healthz(client))
            time.sleep(0.1)
    assert statuses == [200] * 10
    assert sum(is_closed(sock) for sock in idle) >= 300 - 100
    for sock in idle:
        sock.close()
