"""The HTTP client the LLM providers share their connections through.

httpx's connection pool (httpcore) scans every connection it holds, with a readability syscall
for each idle one, whenever a request starts or ends. A worker running 50 jobs at once keeps about
50 connections open to its provider: each request then cost more CPU in that scan than in
everything else it does, and a smaller pool would close and reopen connections (TLS handshakes)
all the time. `PooledTransport` keeps several small pools instead, and gives each request to the
least busy one: every scan stays short, and every connection stays open for the next request.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

PER_POOL = 5


class PooledTransport(httpx.AsyncBaseTransport):
    def __init__(self, connections: int, per_pool: int = PER_POOL) -> None:
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        count = max(1, math.ceil(connections / per_pool))
        tls = httpx.create_ssl_context()  # one for all: each takes tens of ms to load
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        chosen = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[chosen] += 1
        try:  # until the answer's headers: its (small) body is read at once after
            return await self._pools[chosen].handle_async_request(request)
        finally:
            self._busy[chosen] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def http_client(connections: int, timeout_s: float, **options: Any) -> httpx.AsyncClient:
    """An httpx client for about `connections` requests at once (WORKER_CONCURRENCY)."""
    return httpx.AsyncClient(
        transport=PooledTransport(connections),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        **options,
    )
