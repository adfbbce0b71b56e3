"""Settings and a signed-webhook receiver for the batch, webhook and CLI e2e tests.

Their processes are started by `Launcher` (tests/e2e/conftest.py) with `service_env`: two tenants
(`KEYS`), the stub Gemini, webhooks allowed to loopback, Redis mode when given a URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

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
