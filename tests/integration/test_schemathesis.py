"""schemathesis against the app's own OpenAPI document, in process over ASGI, with the embedded
composition (SQLite, the in-process queue, the offline LLM): every operation, both body types of
`POST /v1/batches`, valid and invalid input. No 5xx, no answer outside the document (status, content
type, headers, body schema), invalid input refused; the document itself must load and resolve."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from shared.factory import ServiceFactory
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """The document describes NDJSON as an array whose items go one a line."""
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


async def resolve_publicly(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]  # webhook hosts must not reach a real DNS resolver


# schemathesis reads the document when this module is imported; nothing connects until the first
# request starts the app's lifespan, and `stop_the_app` stops it again.
WORKDIR = tempfile.TemporaryDirectory(prefix="chatjobs-schemathesis-")
APP = create_app(
    ServiceFactory(
        make_settings(
            api_keys="t1:k1",
            sqlite_path=str(Path(WORKDIR.name) / "chatjobs.db"),
            webhook_allow_private=False,
        )
    )
)
CONFIG = schemathesis.Config.from_dict(
    {
        # schemathesis sends the key where the document asks for it, and leaves it out (or
        # spoils it) in negative cases, which must then answer 401
        "auth": {"openapi": {"HTTPBearer": {"bearer": "k1"}}},
        # like most HTTP APIs it ignores query parameters it does not know (cache busters...)
        "generation": {"allow-extra-parameters": False},
        # 413: a body over MAX_BODY_BYTES is refused before it is read
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
    }
)
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def stop_the_app() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("shared.webhooks.ssrf.system_resolve", resolve_publicly)
        try:
            yield
        finally:
            asgi.shutdown_lifespans()  # closes the store: its thread would keep pytest alive
            WORKDIR.cleanup()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_document_says(case: schemathesis.Case[Any]) -> None:
    if case.path == "/v1/jobs/{job_id}" and isinstance(case.query, dict):
        case.query.pop("wait", None)  # a real job would hold the request for up to 30 s
    case.call_and_validate(checks=CHECKS)
