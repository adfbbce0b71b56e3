"""What FastAPI cannot infer for the OpenAPI document: operation ids, the batch body's schema (the
route parses JSON or NDJSON by hand), the webhook events, headers every response carries, and the
models this deployment serves (the only values `model` may take)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, create_model

from api.openai.errors import OpenAIErrorResponse, in_dialect
from api.requestid import HEADER as REQUEST_ID
from api.requestid import MAX_CHARS
from api.routes.job_events import DeltaEvent, StatusEvent
from shared.config import Settings
from shared.models import BatchCreate, BatchPublic, JobPublic

REF_TEMPLATE = "#/components/schemas/{model}"
# Models a route refers to with a `$ref` that FastAPI does not put in the components itself.
HAND_PARSED_BODIES: tuple[type[BaseModel], ...] = (BatchCreate,)
STREAMED_EVENTS: tuple[type[BaseModel], ...] = (StatusEvent, DeltaEvent)  # /v1/jobs/{id}/events
# Headers on every response: {name: OpenAPI header object}.
COMMON_HEADERS: dict[str, dict[str, Any]] = {
    REQUEST_ID: {
        "description": "The request's `X-Request-ID` (sanitized), or one made up for it.",
        "schema": {"type": "string", "maxLength": MAX_CHARS},
    }
}
# Request schemas with a `model` field: the document lists the served models as its enum.
MODEL_FIELDS = ("JobCreate", "BatchItem", "ChatCompletionCreate")
# The error envelope's words, filled in where api/errors.py leaves a description out
# ({schema: {property or "" for the schema itself: description}}).
ERROR_WORDS: dict[str, dict[str, str]] = {
    "ErrorResponse": {"": "Every error answer.", "error": "What went wrong."},
    "ErrorDetail": {
        "": "An error: a stable `code` to act on and a `message` for people.",
        "code": "Stable, machine-readable: what kind of error (the list is below).",
        "message": "What went wrong, for people; names the field or limit where there is one.",
    },
    "FieldError": {
        "": "One invalid input of an `invalid_request`.",
        "message": "What is wrong with it.",
    },
}


def operation_id(route: APIRoute) -> str:
    """The route function's name (verb_noun, e.g. `create_job`) is its operation id."""
    return route.name


def _without_webhook(model: type[BaseModel], name: str) -> type[BaseModel]:
    """A webhook's `data` is the public job/batch without its own delivery state."""
    fields: dict[str, Any] = {
        field: (info.annotation, info)
        for field, info in model.model_fields.items()
        if field != "webhook"
    }
    return create_model(name, __doc__=model.__doc__, **fields)


JobEventData = _without_webhook(JobPublic, "JobEventData")
BatchEventData = _without_webhook(BatchPublic, "BatchEventData")


class JobEvent(BaseModel):
    """Sent when a job finishes: `job.succeeded`, `job.failed` or `job.cancelled`."""

    type: Literal["job.succeeded", "job.failed", "job.cancelled"] = Field(
        description="How the job ended."
    )
    timestamp: datetime = Field(description="When the job finished; the same on every retry.")
    data: JobEventData = Field(description="The job as it ended.")  # type: ignore[valid-type]


class BatchEvent(BaseModel):
    """Sent once when every job of a batch is finished (or the batch was cancelled)."""

    type: Literal["batch.completed"] = Field(description="Always `batch.completed`.")
    timestamp: datetime = Field(description="When the batch finished; the same on every retry.")
    data: BatchEventData = Field(description="The batch as it ended.")  # type: ignore[valid-type]


WebhookId = Annotated[
    str,
    Header(
        alias="webhook-id",
        description="Stable across retries: deduplicate on it.",
        examples=["msg_2f6c1f0e9a7d4b1c8e3a5d7f9b0c2e4a"],
    ),
]
WebhookTimestamp = Annotated[
    str,
    Header(
        alias="webhook-timestamp",
        description="Unix seconds of this attempt.",
        examples=["1767607800"],
    ),
]
WebhookSignature = Annotated[
    str,
    Header(
        alias="webhook-signature",
        description="`v1,<base64 HMAC-SHA256 of id.timestamp.body>` keyed with the secret from "
        "`GET /v1/webhook-secret` (Standard Webhooks).",
        examples=["v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="],
    ),
]
DELIVERY: dict[int | str, dict[str, Any]] = {
    200: {"description": "Any 2xx acknowledges the event."},
    "default": {
        "description": "Anything else, or no answer within WEBHOOK_TIMEOUT_S, is retried on "
        "WEBHOOK_RETRY_SCHEDULE. Redirects are not followed."
    },
}


def _job_webhook(event: str) -> Callable[..., None]:
    def receive(
        body: JobEvent,
        webhook_id: WebhookId,
        webhook_timestamp: WebhookTimestamp,
        webhook_signature: WebhookSignature,
    ) -> None:
        pass

    receive.__name__ = event.replace(".", "_")
    receive.__doc__ = f"`{event}`: sent to the job's `webhook_url`, signed (Standard Webhooks)."
    return receive


def _batch_completed(
    body: BatchEvent,
    webhook_id: WebhookId,
    webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> None:
    """`batch.completed`: sent to the batch's `webhook_url`, signed (Standard Webhooks)."""


def add_webhooks(app: FastAPI) -> None:
    for event in ("job.succeeded", "job.failed", "job.cancelled"):
        receive = _job_webhook(event)
        app.webhooks.post(event, operation_id=receive.__name__, responses=DELIVERY)(receive)
    app.webhooks.post("batch.completed", operation_id="batch_completed", responses=DELIVERY)(
        _batch_completed
    )


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Complete the app's document: webhooks now; the rest each time it is generated."""
    add_webhooks(app)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in HAND_PARSED_BODIES + STREAMED_EVENTS:
            _add_schema(schemas, model)
        _list_served_models(schemas, settings.models.names)
        _limit_batch_size(document, settings.batch_max_requests)
        _add_error_words(schemas)
        _openai_error_shapes(document)
        _add_common_headers(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _openai_error_shapes(document: dict[str, Any]) -> None:
    """Under /openai/ a malformed request is 400 and every error is OpenAI's shape: FastAPI's
    default 422 and the app-wide 500 (the native error object) do not apply there."""
    openai_ref = {"$ref": REF_TEMPLATE.format(model=OpenAIErrorResponse.__name__)}
    for path, path_item in document.get("paths", {}).items():
        if not in_dialect(path):
            continue
        for operation in path_item.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            if "500" in responses:
                responses["500"]["content"]["application/json"]["schema"] = openai_ref
    schemas = document["components"]["schemas"]
    _add_schema(schemas, OpenAIErrorResponse)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)


def _list_served_models(schemas: dict[str, Any], names: list[str]) -> None:
    for name in MODEL_FIELDS:
        if name in schemas:
            model = schemas[name]["properties"]["model"]
            branches = model.get("anyOf", [model])  # optional natively, required in OpenAI's
            string = next(branch for branch in branches if branch.get("type") == "string")
            string["enum"] = names


def _limit_batch_size(document: dict[str, Any], max_requests: int) -> None:
    """BATCH_MAX_REQUESTS as the maximum of both batch body types."""
    document["components"]["schemas"]["BatchCreate"]["properties"]["requests"]["maxItems"] = (
        max_requests
    )
    submit = document["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    submit["application/x-ndjson"]["schema"]["maxItems"] = max_requests


def _add_error_words(schemas: dict[str, Any]) -> None:
    for name, words in ERROR_WORDS.items():
        schema = schemas.get(name)
        if schema is None:
            continue
        for field, description in words.items():
            target = schema if not field else schema.get("properties", {}).get(field)
            if target is not None:
                target.setdefault("description", description)


def _add_common_headers(document: dict[str, Any]) -> None:
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {}).update(COMMON_HEADERS)
