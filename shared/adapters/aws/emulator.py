"""moto's server as the local AWS emulator of `make aws-local` and the tests. Never imported by
the service itself: production talks to AWS.

It serves moto's own WSGI application (what `moto_server` and ThreadedMotoServer serve), with two
changes that make it behave as AWS does where this service relies on it:

- `SerialDynamoDB`, a WSGI middleware, runs DynamoDB requests one at a time. DynamoDB applies
  every request atomically; moto's server runs each on its own thread and its DynamoDB backend
  takes no lock, so requests interleave (batch counters came out wrong: `running: -1`, or a batch
  stuck one short of complete). SQS (its long polls), Secrets Manager and the rest stay
  concurrent.
- `moto_patches.apply()`: moto's transactions copy whole tables, its queries sort the whole
  table the slow way, and its SQS recounts the queue on every message; at a few thousand jobs
  that timed the service out (see that module).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

DYNAMODB_TARGET = "DynamoDB"  # X-Amz-Target: DynamoDB_20120810.<Operation>

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialDynamoDB:
    """WSGI middleware: DynamoDB requests one at a time (the whole request, answer included)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET):
            return self.app(environ, start_response)
        with self._lock:
            answer = self.app(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()


@contextmanager
def moto_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's server (every service) on `host:port` (0: a free port), as above, in threads of
    this process; yields its endpoint URL. The state lives as long as this process does."""
    import logging

    # The WSGI application that `moto_server` and ThreadedMotoServer both serve, served here
    # the same way (werkzeug, a thread per request) inside SerialDynamoDB.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from shared.adapters.aws import moto_patches

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
    moto_patches.apply()
    app = SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
