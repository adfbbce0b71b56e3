"""A worker's /metrics: its Services registry over HTTP on WORKER_METRICS_PORT, bound to HOST.

prometheus_client serves it from a daemon thread; the collectors it reads are in-memory and
thread-safe, so a scrape never touches the event loop or the store.
"""

from __future__ import annotations

import asyncio
import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from shared.config import Settings

log = logging.getLogger(__name__)


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> WSGIServer | None:
    """Start serving when WORKER_METRICS_PORT is set; a port already taken fails loudly."""
    if settings.worker_metrics_port is None:
        return None
    host, port = settings.host, settings.worker_metrics_port
    try:
        server, _ = start_http_server(port, host, registry)
    except OSError as exc:
        message = f"cannot serve metrics on {host}:{port} (WORKER_METRICS_PORT): {exc}"
        raise RuntimeError(message) from exc
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server


async def stop_metrics(server: WSGIServer) -> None:
    await asyncio.to_thread(server.shutdown)  # waits for the serving thread's loop to end
    server.server_close()
