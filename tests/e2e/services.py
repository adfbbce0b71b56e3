"""Process stacks and a signed-webhook receiver for the batch, webhook and CLI e2e tests.

`Stack` starts `python -m api` (embedded, or beside `python -m worker` processes in Redis mode)
in a scratch directory with a scrubbed environment, SQLite under the test's tmp_path, the stub LLM
and a test webhook signing secret; `close()` stops every process it started. `WebhookReceiver`
is a loopback HTTP server that verifies each delivery with the `standardwebhooks` package.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from tests.e2e import procs
from tests.stubs.fixtures import LLMStub

KEYS = {"t1": "k1", "t2": "k2"}
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
BATCH_DONE = frozenset({"completed", "cancelled"})


def flush_redis(url: str) -> None:
    from redis import Redis

    with Redis.from_url(url) as client:
        client.flushdb()


class Stack:
    """The service's processes for one test; every one is stopped by `close()`."""

    def __init__(
        self, base_dir: Path, stub: LLMStub, redis_url: str | None = None, **env: str
    ) -> None:
        self.base_dir = base_dir
        self.logs = base_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = procs.child_env(
            HOST="127.0.0.1",
            PORT=str(self.port),
            API_KEYS=",".join(f"{t}:{k}" for t, k in KEYS.items()),
            SQLITE_PATH=str(base_dir / "chatjobs.db"),
            WEBHOOK_SIGNING_SECRET="e2e-batches-webhook-master",
            WEBHOOK_ALLOW_PRIVATE="true",
            RATE_LIMIT="100000/minute",
            GEMINI_API_KEY="stub-key",
            GEMINI_BASE_URL=stub.gemini_base_url,
            LLM_TIMEOUT_S="10",
            **({"REDIS_URL": redis_url} if redis_url else {}),
            **env,
        )
        self.procs: list[procs.Proc] = []
        self.api: procs.Proc | None = None
        self._workers = 0

    def start_api(self) -> procs.Proc:
        self.api = self._start("api", ["-m", "api"])
        procs.wait_ready(self.api, f"{self.url}/readyz")
        return self.api

    def start_worker(self) -> procs.Proc:
        """`python -m worker`, once arq is about to poll (it logs "Starting worker for")."""
        self._workers += 1
        worker = self._start(f"worker-{self._workers}", ["-m", "worker"])
        if not procs.wait_for(lambda: _started(worker), timeout=30, interval=0.05):
            raise RuntimeError(f"{worker.name} did not start:\n{worker.log()}")
        return worker

    def _start(self, name: str, args: list[str]) -> procs.Proc:
        proc = procs.start(name, args, self.env, self.logs, cwd=self.base_dir)
        self.procs.append(proc)
        return proc

    def client(self, tenant: str = "t1") -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=40, trust_env=False)

    def close(self) -> None:
        for proc in self.procs:
            proc.kill(signal.SIGTERM)
        for proc in self.procs:
            proc.stop(timeout=15)

    def log_tails(self, chars: int = 4000) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-chars:]}" for p in self.procs)


def _started(worker: procs.Proc) -> bool:
    if worker.popen.poll() is not None:
        raise RuntimeError(f"{worker.name} exited early:\n{worker.log()}")
    return "Starting worker for" in worker.log()


def wait_batch(http: httpx.Client, batch_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        if batch["status"] in BATCH_DONE:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch not finished after {timeout}s: {batch}")
        time.sleep(0.25)


def wait_job(http: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        wait = min(max(deadline - time.monotonic(), 0), 10)
        response = http.get(f"/v1/jobs/{job_id}", params={"wait": wait})
        job: dict[str, Any] = response.raise_for_status().json()
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job not finished after {timeout}s: {job}")


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
