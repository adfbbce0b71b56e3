"""The HTTP session the LLM providers call through: aiohttp, one per provider per process.

Measured on the same stub server, 50 calls at once (docs/PERFORMANCE.md): a call cost about
0.15 ms of CPU through aiohttp, 0.6-1 ms through httpx (whose connection pool also rescans every
connection it holds, with a syscall for each idle one, whenever a request starts or ends), and
2.5-3 ms through the google-genai SDK. At a worker's 50 calls in flight that is the difference
between the LLM client and the rest of the job costing the most CPU.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi

from shared.errors import TransientLLMError

_TLS: ssl.SSLContext | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def new_session(connections: int, headers: Mapping[str, str], url: str) -> aiohttp.ClientSession:
    """Keep-alive connections to `url`'s host for about `connections` calls at once
    (WORKER_CONCURRENCY). A proxy from the environment (HTTPS_PROXY, NO_PROXY…) is honoured, as
    with httpx, and looked up once here: aiohttp's own `trust_env` rereads the environment and
    ~/.netrc on every request."""
    global _TLS
    if _TLS is None:  # loading the CA bundle takes tens of milliseconds: once per process
        _TLS = ssl.create_default_context(cafile=certifi.where())
    connector = aiohttp.TCPConnector(limit=max(connections, 1), ssl=_TLS)
    return aiohttp.ClientSession(headers=dict(headers), connector=connector, proxy=_proxy_for(url))


def _proxy_for(url: str) -> str | None:
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxy: str | None = urllib.request.getproxies().get(parts.scheme)
    return proxy


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    *,
    provider: str,
    timeout_s: float,
) -> Answer:
    """One POST, no redirects followed, no retry; a timeout or a connection failure raises
    TransientLLMError."""
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.post(url, json=payload, allow_redirects=False) as response,
        ):
            return Answer(response.status, response.headers, await response.read())
    except TimeoutError as exc:
        raise TransientLLMError(f"timed out after {timeout_s:g} s", provider=provider) from exc
    except aiohttp.ClientError as exc:
        raise TransientLLMError(f"{type(exc).__name__}: {exc}", provider=provider) from exc
