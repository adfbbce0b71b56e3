"""A webhook receiver on loopback that verifies every delivery with `standardwebhooks`.

It answers with `answers` in turn (the last one repeats); a 3xx answer points `Location` at
`/redirected`, so a test can show that redirects are not followed. Optional TLS for SNI tests.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body or b"null")

    def verifies_with(self, secret: str) -> bool:
        """Would a receiver holding `secret` accept this very delivery?"""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class WebhookReceiver:
    """Set `secret` (e.g. from GET /v1/webhook-secret) before deliveries arrive."""

    answers: list[int] = field(default_factory=lambda: [200])
    secret: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self, tls: ssl.SSLContext | None = None) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._record(self.path, headers, body)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", f"{receiver.base_url}/redirected")
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        kwargs = {"poll_interval": 0.02}
        threading.Thread(target=self._server.serve_forever, kwargs=kwargs, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    @property
    def webhook_ids(self) -> set[str]:
        return {d.webhook_id for d in self.received()}

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            assert self.secret is not None, "the receiver has no secret yet"
            Webhook(self.secret).verify(body, headers)
            verified = True
        except Exception:
            verified = False
        with self._lock:
            status = self.answers[min(len(self.deliveries), len(self.answers) - 1)]
            self.deliveries.append(Delivery(path, headers, body, verified, status))
            return status
