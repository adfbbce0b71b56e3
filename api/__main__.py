"""`python -m api`: serve the API with uvicorn on HOST:PORT."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from api.connections import ConnectionLimits, default_max_connections, guarded_protocol
from shared.config import Settings
from shared.factory import ServiceFactory
from shared.logs import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format)
    app = create_app(ServiceFactory(settings))
    # log_config=None: uvicorn's own records (access log included) go through ours
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        http=guarded_protocol(connection_limits(settings)),
        ws="none",  # no WebSocket routes: an upgrade request is served as plain HTTP
        timeout_keep_alive=settings.http_keep_alive_s,
        # X-Forwarded-For only from the proxies named; uvicorn's own default trusts loopback
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
    )


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        max_connections=settings.http_max_connections or default_max_connections(),
    )


if __name__ == "__main__":
    main()
