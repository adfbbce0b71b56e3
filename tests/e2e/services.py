"""Settings and a signed-webhook receiver for the batch, webhook and CLI e2e tests.

Their processes are started by `Launcher` (tests/e2e/conftest.py) with `service_env`: two tenants
(`KEYS`), the stub Gemini, webhooks allowed to loopback, Redis mode when given a URL.
`WebhookReceiver` is a loopback HTTP server that verifies each delivery with `standardwebhooks`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook

from tests.e2e.conftest import stub_llm_env
from tests.stubs.fixtures import LLMStub

KEYS = {"t1": "k1", "t2": "k2"}
BATCH_DONE = frozenset({"completed", "cancelled"})


def service_env(stub: LLMStub, redis_url: str | None = None, **env: str) -> dict[str, str]:
    """Settings for `Launcher.api` and `Launcher.worker`: tenants `KEYS`, the stub Gemini (no
    OpenRouter), webhooks to loopback allowed, Redis mode if `redis_url` is given, then `env`."""
    return {
        "API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "LLM_TIMEOUT_S": "10",
        **stub_llm_env(stub, openrouter=False),
        **({"REDIS_URL": redis_url} if redis_url else {}),
        **env,
    }


def flush_redis(url: str) -> None:
    from redis import Redis

    with Redis.from_url(url) as client:
        client.flushdb()


def wait_batch(http: httpx.Client, batch_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        if batch["status"] in BATCH_DONE:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch not finished after {timeout}s: {batch}")
        time.sleep(0.25)


def wait_until(
    read: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str
) -> Any:
    """Poll `read()` until `done(value)`; fail naming `what` and the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s; last: {value}")
        time.sleep(0.1)


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Answers deliveries with `answers` in turn (the last one repeats), verifying each with
    `Webhook(secret).verify`. Set `secret` from GET /v1/webhook-secret before deliveries come."""

    answers: list[int] = field(default_factory=lambda: [200])
    secret: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver._record({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        kwargs = {"poll_interval": 0.05}
        threading.Thread(target=self._server.serve_forever, kwargs=kwargs, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def _record(self, headers: dict[str, str], body: bytes) -> int:
        try:
            assert self.secret is not None, "the receiver has no secret yet"
            Webhook(self.secret).verify(body, headers)
            verified = True
        except Exception:
            verified = False
        with self._lock:
            status = self.answers[min(len(self.deliveries), len(self.answers) - 1)]
            self.deliveries.append(Delivery(headers, body, verified, status))
            return status

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)
