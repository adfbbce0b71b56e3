"""schemathesis against the app's own OpenAPI document, in process over ASGI, with the embedded
composition (SQLite, the in-process queue, the offline LLM): every operation, both body types of
`POST /v1/batches`, valid and invalid input. No 5xx, no answer outside the document (status, content
type, headers, body schema), invalid input refused, valid input accepted (but for the rules no JSON
Schema can state, which the document says in words); the document itself must load and resolve."""

from __future__ import annotations

import json
import os
import re
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
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from shared.factory import ServiceFactory
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
# Rules no JSON Schema can state, so a request the document calls valid may still be refused by
# them, with 422 naming the field and saying why (the descriptions say the same in prose):
# {operation: [(field, the end of the message)]}, both regular expressions.
PERIOD = r"(from \(\S+\) is after to \(\S+\)|from\.\.to spans \d+ days; at most 366)$"
# JSON Schema's "integer" takes 1.0 too; the API is strict and wants 1 (the field says so).
WHOLE_NUMBER = (
    r"(requests\.\d+\.|line \d+\.)?(max_tokens|max_completion_tokens|seed)",
    "Input should be a valid integer$",
)
# An IP address literal in a private, loopback, reserved... range (names resolve publicly here).
INTERNAL_ADDRESS = (
    r"(requests\.\d+\.|line \d+\.)?webhook_url",
    r"webhook_url address \S+ is a [a-z-]+ address: not allowed$",
)
# Two requests of one batch with the same custom_id ("uniqueItems" compares whole items).
REPEATED_CUSTOM_ID = (r"(requests\.\d+\.|line \d+\.)custom_id", r"custom_id .* is already used ")
# response_format's json_schema goes with type json_schema, and only with it.
SCHEMA_WITH_ITS_TYPE = (
    r"(requests\.\d+\.|line \d+\.)?response_format",
    r"json_schema is required with type 'json_schema', and only with it$",
)
BEYOND_THE_SCHEMA: dict[str, list[tuple[str, str]]] = {
    "POST /v1/jobs": [WHOLE_NUMBER, INTERNAL_ADDRESS, SCHEMA_WITH_ITS_TYPE],
    "POST /v1/batches": [WHOLE_NUMBER, INTERNAL_ADDRESS, REPEATED_CUSTOM_ID, SCHEMA_WITH_ITS_TYPE],
    "POST /openai/v1/chat/completions": [WHOLE_NUMBER, SCHEMA_WITH_ITS_TYPE],
    "GET /v1/batches": [("cursor", "^not a cursor returned by this endpoint$")],
    # a cursor of the right shape that this listing did not make
    "GET /v1/jobs": [("cursor", "^not a cursor returned by this endpoint$")],
    # `from` after `to`, or a period over 366 days: two parameters, and today's date
    "GET /v1/usage": [("from|to", PERIOD)],
    "GET /v1/admin/usage": [("from|to", PERIOD)],
    "GET /v1/admin/jobs": [("cursor", "^not a cursor returned by this endpoint$")],
    "GET /v1/admin/batches": [("cursor", "^not a cursor returned by this endpoint$")],
    "GET /v1/admin/keys": [("cursor", "^not a cursor returned by this endpoint$")],
    # a key's expiry must be in the future: today's date again
    "POST /v1/admin/keys": [("expires_at", "^must be in the future$")],
}


def refused_by_a_rule_beyond_the_schema(case: schemathesis.Case[Any], response: Any) -> bool:
    rules = BEYOND_THE_SCHEMA.get(f"{case.method.upper()} {case.path}")
    if rules is None or response.status_code not in (400, 422):
        return False
    fields = refused_fields(response.json()["error"])
    return bool(fields) and all(
        any(
            re.fullmatch(field, item["field"]) and re.search(message, item["message"])
            for field, message in rules
        )
        for item in fields
    )


def refused_fields(error: dict[str, Any]) -> list[dict[str, Any]]:
    """The native error's `fields`, or OpenAI's one `param` (and its message). OpenAI's shape
    names one field and counts the rest ("… (and 1 more)"): those are the same request's other
    fields, which the native operations, sharing their schema, check one by one."""
    if "type" in error:  # OpenAI's shape, under /openai/
        message = re.sub(r" \(and \d+ more\)$", "", error["message"])
        return [{"field": error["param"], "message": message}] if error["param"] else []
    return list(error.get("fields") or [])


@schemathesis.check
def valid_data_accepted(ctx: Any, response: Any, case: schemathesis.Case[Any]) -> bool | None:
    """schemathesis' positive_data_acceptance, but for the refusals BEYOND_THE_SCHEMA names."""
    if refused_by_a_rule_beyond_the_schema(case, response):
        return None
    accepted: bool | None = positive_data_acceptance(ctx, response, case)
    return accepted


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    valid_data_accepted,
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
            admin_api_keys="admin1",
            sqlite_path=str(Path(WORKDIR.name) / "chatjobs.db"),
            files_dir=str(Path(WORKDIR.name) / "files"),
            webhook_allow_private=False,
        )
    )
)
CONFIG = schemathesis.Config.from_dict(
    {
        # schemathesis sends the key where the document asks for it, and leaves it out (or
        # spoils it) in negative cases, which must then answer 401
        "auth": {"openapi": {"HTTPBearer": {"bearer": "k1"}, "AdminBearer": {"bearer": "admin1"}}},
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
