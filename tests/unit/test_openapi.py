"""The OpenAPI document says what the API does: every reference resolves, both batch body types
are described, errors are the service's error object, headers and webhooks are documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest

from tests.unit.conftest import Api

OPERATIONS = {
    ("post", "/v1/jobs"): "create_job",
    ("post", "/openai/v1/chat/completions"): "create_chat_completion",
    ("get", "/openai/v1/models"): "list_models",
    ("get", "/openai/v1/models/{model}"): "get_model",
    ("post", "/openai/v1/files"): "create_file",
    ("get", "/openai/v1/files"): "list_files",
    ("get", "/openai/v1/files/{file_id}"): "retrieve_file",
    ("delete", "/openai/v1/files/{file_id}"): "delete_file",
    ("get", "/openai/v1/files/{file_id}/content"): "download_file_content",
    ("post", "/openai/v1/batches"): "create_openai_batch",
    ("get", "/openai/v1/batches"): "list_openai_batches",
    ("get", "/openai/v1/batches/{batch_id}"): "retrieve_openai_batch",
    ("post", "/openai/v1/batches/{batch_id}/cancel"): "cancel_openai_batch",
    ("get", "/v1/jobs"): "list_jobs",
    ("get", "/v1/jobs/{job_id}"): "get_job",
    ("get", "/v1/jobs/{job_id}/events"): "get_job_events",
    ("delete", "/v1/jobs/{job_id}"): "delete_job",
    ("post", "/v1/jobs/{job_id}/cancel"): "cancel_job",
    ("post", "/v1/batches"): "create_batch",
    ("get", "/v1/batches"): "list_batches",
    ("get", "/v1/batches/{batch_id}"): "get_batch",
    ("get", "/v1/batches/{batch_id}/results"): "get_batch_results",
    ("post", "/v1/batches/{batch_id}/cancel"): "cancel_batch",
    ("post", "/v1/batches/{batch_id}/retry-failed"): "retry_failed_batch",
    ("get", "/v1/webhook-secret"): "get_webhook_secret",
    ("get", "/v1/usage"): "get_usage",
    ("post", "/v1/admin/keys"): "create_key",
    ("get", "/v1/admin/keys"): "list_keys",
    ("get", "/v1/admin/keys/{key_id}"): "get_key",
    ("post", "/v1/admin/keys/{key_id}/revoke"): "revoke_key",
    ("post", "/v1/admin/keys/{key_id}/rotate"): "rotate_key",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
    ("get", "/v1/admin/jobs"): "list_admin_jobs",
    ("get", "/v1/admin/jobs/{job_id}"): "get_admin_job",
    ("post", "/v1/admin/jobs/{job_id}/cancel"): "cancel_admin_job",
    ("post", "/v1/admin/jobs/{job_id}/retry"): "retry_admin_job",
    ("get", "/v1/admin/batches"): "list_admin_batches",
    ("get", "/v1/admin/batches/{batch_id}"): "get_admin_batch",
    ("get", "/v1/admin/batches/{batch_id}/results"): "get_admin_batch_results",
    ("post", "/v1/admin/batches/{batch_id}/cancel"): "cancel_admin_batch",
    ("get", "/v1/admin/overview"): "get_admin_overview",
    ("get", "/v1/admin/webhooks/failing"): "list_failing_webhooks",
    ("post", "/v1/admin/webhooks/{subject_id}/redeliver"): "redeliver_webhook",
    ("get", "/v1/admin/usage"): "get_admin_usage",
    ("get", "/v1/admin/dead-letters"): "list_dead_letters",
    ("post", "/v1/admin/dead-letters/{queue}/redrive"): "redrive_dead_letters",
}
ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture
async def document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert found
    for ref in found:
        resolve(document, ref)
    assert "$defs" not in str(found)


def test_both_batch_body_types_are_described(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-ndjson"}
    batch = resolve(document, content["application/json"]["schema"]["$ref"])
    assert set(batch["properties"]) == {"requests", "webhook_url", "metadata", "priority"}
    item = resolve(document, batch["properties"]["requests"]["items"]["$ref"])
    assert "custom_id" in item["required"]
    lines = content["application/x-ndjson"]["schema"]
    assert lines["type"] == "array" and resolve(document, lines["items"]["$ref"]) == item


def test_operation_ids_are_verb_noun_names(document: dict[str, Any]) -> None:
    found = {(method, path): op["operationId"] for method, path, op in operations(document)}
    assert found == OPERATIONS


def test_errors_are_documented_as_the_service_error_object(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            schema = response["content"]["application/json"]["schema"]
            expected = "#/components/schemas/Unready" if path == "/readyz" else ERROR_REF
            if (path, status) == ("/readyz", "500"):
                expected = ERROR_REF
            if path.startswith("/openai/"):
                expected = "#/components/schemas/OpenAIErrorResponse"
            assert schema == {"$ref": expected}, (method, path, status)
        has_input = operation.get("parameters") or operation.get("requestBody")
        malformed = "400" if path.startswith("/openai/") else "422"
        assert not has_input or malformed in operation["responses"], (method, path)


def test_error_codes_are_listed(document: dict[str, Any]) -> None:
    from api.errors import ErrorCode

    code = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert set(code["enum"]) == set(get_args(ErrorCode))
    assert {"invalid_request", "rate_limited", "queue_unavailable", "not_found"} <= set(
        code["enum"]
    )


def test_headers_are_documented_where_they_are_sent(document: dict[str, Any]) -> None:
    submit = document["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"Location", "Retry-After"} <= set(submit["202"]["headers"])
    assert "Retry-After" in submit["429"]["headers"]
    assert "Retry-After" in submit["503"]["headers"]
    assert "WWW-Authenticate" in submit["401"]["headers"]
    batch = document["paths"]["/v1/batches"]["post"]["responses"]
    assert "Location" in batch["202"]["headers"]
    assert "Retry-After" in batch["429"]["headers"]


def test_webhook_events_are_documented(document: dict[str, Any]) -> None:
    webhooks = document["webhooks"]
    assert set(webhooks) == {"job.succeeded", "job.failed", "job.cancelled", "batch.completed"}
    for event, item in webhooks.items():
        operation = item["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        body = resolve(
            document, operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        )
        kind = body["properties"]["type"]
        assert event in kind.get("enum", [kind.get("const")])
        data = resolve(document, body["properties"]["data"]["$ref"])
        assert "webhook" not in data["properties"]  # as sent: without its own delivery state


async def test_readyz_503_body_is_as_documented(api: Api) -> None:
    from api.routes.health import Unready

    api.queue.refuse = True
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert Unready.model_validate(response.json()).error.code == "not_ready"
