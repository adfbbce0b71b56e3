"""The API's Lambda entry point: the same FastAPI app behind API Gateway (HTTP API), via Mangum.

Services are started once per container, on the first invocation, and reused by every warm one:
Mangum runs with lifespan "off" (otherwise it would start and stop them on every request).
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from api.app import create_app
from shared.lambda_runtime import LambdaRuntime
from shared.logs import configure_logging

_adapter: Mangum | None = None
_runtime: LambdaRuntime | None = None


def build(runtime: LambdaRuntime) -> Mangum:
    app = create_app(runtime.factory)
    app.state.services = runtime.services()
    return Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _adapter, _runtime
    if _adapter is None:
        configure_logging()
        _runtime = LambdaRuntime()
        _adapter = build(_runtime)
    assert _runtime is not None
    _runtime.enter()
    return _adapter(event, context)
