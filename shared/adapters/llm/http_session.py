"""The aiohttp session each provider calls through (Gemini's SDK too, as its `aiohttp_client`),
one per provider per process.

Measured on the same stub server, 50 calls at once (docs/PERFORMANCE.md): a call cost about
0.15 ms of CPU through aiohttp against 0.6-1 ms through httpx, whose connection pool rescans
every connection it holds, with a syscall for each idle one, whenever a request starts or ends.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
import certifi

_TLS: ssl.SSLContext | None = None


def new_session(connections: int, headers: Mapping[str, str], url: str) -> aiohttp.ClientSession:
    """Keep-alive connections to `url`'s host for about `connections` calls at once
    (WORKER_CONCURRENCY); redirects are the caller's to refuse. A proxy from the environment
    (HTTPS_PROXY, NO_PROXY…) is honoured and looked up once here: aiohttp's own `trust_env`
    rereads the environment and ~/.netrc on every request."""
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
