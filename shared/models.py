"""Domain models shared by the API and the workers.

`*Create` models are what clients send; `Job` and `Batch` are the stored records;
`*Public` models are what clients see (no tenant, no internal bookkeeping).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_MESSAGES = 100
MAX_CONTENT_CHARS = 100_000
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_CUSTOM_ID_CHARS = 64
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_SCHEMA_CHARS = 100_000
SEED_BOUND = 2**31  # Gemini's seed is a 32-bit integer; OpenAI's takes any 64-bit one


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class BatchStatus(StrEnum):
    in_progress = "in_progress"
    completed = "completed"
    cancelling = "cancelling"
    cancelled = "cancelled"


# What clients send is validated strictly: no coercion ("yes" is not a bool, "1" not a number, true
# not an integer), so a typo answers 422 naming the field instead of meaning something else.
REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True)


class Message(BaseModel):
    model_config = REQUEST_CONFIG

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)]


def _bounded_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys are allowed")
    return metadata


Metadata = Annotated[
    dict[
        Annotated[str, Field(max_length=MAX_METADATA_KEY_CHARS)],
        Annotated[str, Field(max_length=MAX_METADATA_VALUE_CHARS)],
    ],
    AfterValidator(_bounded_metadata),
    Field(description=f"Up to {MAX_METADATA_KEYS} string pairs, echoed back on the job."),
]


class JsonSchemaFormat(BaseModel):
    """OpenAI's `json_schema` object: the JSON Schema the answer must follow."""

    model_config = ConfigDict(extra="forbid", strict=True, serialize_by_alias=True)

    name: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            description="The schema's name: letters, digits, `_` and `-`, up to 64.",
            examples=["city"],
        ),
    ]
    description: Annotated[
        str | None,
        Field(
            max_length=1_000,
            description="What the answer is for (OpenRouter passes it to the model).",
            examples=["The city the question asks about"],
        ),
    ] = None
    schema_: Annotated[
        dict[str, Any],
        Field(
            alias="schema",
            description="A JSON Schema object (Gemini gets it as `response_json_schema`).",
            examples=[{"type": "object", "properties": {"city": {"type": "string"}}}],
        ),
    ]
    strict: Annotated[
        bool | None,
        Field(description="OpenAI's strict schema adherence (OpenRouter only).", examples=[True]),
    ] = None

    @field_validator("schema_")
    @classmethod
    def _bounded_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
            raise ValueError(f"the schema may take at most {MAX_SCHEMA_CHARS} characters of JSON")
        return schema


class ResponseFormat(BaseModel):
    """What shape the answer takes: `text` (the default), `json_object` (any JSON object) or
    `json_schema` (JSON following `json_schema.schema`). Gemini gets `response_mime_type:
    application/json` (and the schema), OpenRouter OpenAI's `response_format` as given. Ask for
    JSON in the prompt too, as OpenAI's models require."""

    model_config = REQUEST_CONFIG

    type: Annotated[
        Literal["text", "json_object", "json_schema"],
        Field(description="The answer's shape.", examples=["json_object"]),
    ]
    json_schema: Annotated[
        JsonSchemaFormat | None,
        Field(description="With `type: json_schema` only: the schema to follow."),
    ] = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type 'json_schema', and only with it")
        return self


StopSequence = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
StopSequences = Annotated[list[StopSequence], Field(min_length=1, max_length=MAX_STOP_SEQUENCES)]


def _as_list(stop: object) -> object:
    """One spelling for the providers and the cache key: a string is a list of one."""
    if isinstance(stop, str):
        return [stop]
    if stop is None or isinstance(stop, list):
        return stop
    raise ValueError(f"must be a string or a list of up to {MAX_STOP_SEQUENCES} strings")


class ChatRequest(BaseModel):
    """Everything that changes the LLM's answer; hashed into the cache key."""

    model_config = REQUEST_CONFIG

    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    model: Annotated[str | None, Field(max_length=200)] = None
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = None  # strict: 1 is fine, "1" not
    max_tokens: Annotated[int | None, Field(ge=1, le=65_536)] = None
    top_p: Annotated[
        float | None,
        Field(ge=0.0, le=1.0, description="Nucleus sampling, 0 to 1.", examples=[0.9]),
    ] = None
    stop: Annotated[
        StopSequences | None,
        BeforeValidator(_as_list, json_schema_input_type=StopSequence | StopSequences | None),
        Field(
            description=f"Text at which the answer stops: a string or up to "
            f"{MAX_STOP_SEQUENCES} strings.",
            examples=[["\n\n", "END"]],
        ),
    ] = None
    seed: Annotated[
        int | None,
        Field(
            ge=-SEED_BOUND,
            lt=SEED_BOUND,
            description="Asks the provider for a repeatable answer (best effort); a 32-bit "
            "integer.",
            examples=[42],
        ),
    ] = None
    response_format: Annotated[
        ResponseFormat | None,
        Field(
            description='`{"type": "json_object"}` for a JSON object, `json_schema` for JSON '
            "that follows a schema; default: text.",
            examples=[{"type": "json_object"}],
        ),
    ] = None

    @field_validator("messages")
    @classmethod
    def _needs_a_user_turn(cls, messages: list[Message]) -> list[Message]:
        if not any(m.role == "user" for m in messages):
            raise ValueError("at least one message must have role 'user'")
        return messages

    def chat_request(self) -> ChatRequest:
        """Just the fields that reach the LLM (subclasses add job bookkeeping). `self` was
        validated as a ChatRequest already, so its values are taken as they are."""
        if type(self) is ChatRequest:
            return self
        return ChatRequest.model_construct(**{f: getattr(self, f) for f in _CHAT_FIELDS})

    @property
    def wants_json(self) -> bool:
        return self.response_format is not None and self.response_format.type != "text"

    def canonical(self) -> dict[str, Any]:
        """The fields as JSON for hashing (cache key, idempotency). The generation parameters
        added later are left out while unset, so a request without them hashes as before."""
        dumped = self.model_dump(mode="json", by_alias=True)
        return {k: v for k, v in dumped.items() if not (k in LATER_FIELDS and v is None)}


LATER_FIELDS = frozenset({"top_p", "stop", "seed", "response_format"})
_CHAT_FIELDS = tuple(ChatRequest.model_fields)


class JobCreate(ChatRequest):
    """Body of POST /v1/jobs."""

    webhook_url: Annotated[str | None, Field(max_length=2048)] = None
    metadata: Metadata = Field(default_factory=dict)
    cache: bool = True


class BatchItem(ChatRequest):
    """One request of a batch: a job body plus the caller's unique `custom_id`."""

    custom_id: Annotated[str, Field(min_length=1, max_length=MAX_CUSTOM_ID_CHARS)]
    webhook_url: Annotated[str | None, Field(max_length=2048)] = None
    metadata: Metadata = Field(default_factory=dict)
    cache: bool = True


class BatchCreate(BaseModel):
    """JSON body of POST /v1/batches (NDJSON bodies carry only the `requests`)."""

    model_config = REQUEST_CONFIG

    requests: Annotated[list[BatchItem], Field(min_length=1)]
    webhook_url: Annotated[str | None, Field(max_length=2048)] = None
    metadata: Metadata = Field(default_factory=dict)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class CompletionPublic(BaseModel):
    """An answer as clients see it: the job's `result`."""

    content: str
    provider: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    latency_ms: int = 0


class Completion(CompletionPublic):
    """What an LLMProvider returns. `fallback` is set by FallbackLLM on an answer from its
    fallback provider (usage counts those); clients see only which `provider` answered."""

    fallback: bool = False

    def public(self) -> CompletionPublic:
        return CompletionPublic.model_validate(self.model_dump(exclude={"fallback"}))


JobErrorCode = Literal[
    "retrying",  # not final: the job waits for its next attempt (message says why)
    "llm_rejected",  # a provider refused the prompt (400-class, safety block)
    "llm_unavailable",  # every provider kept failing until the retry budget ran out
    "attempts_exhausted",  # delivered more times than JOB_MAX_ATTEMPTS allows
    "queue_unavailable",  # the queue refused the job at submit
]


class JobError(BaseModel):
    code: JobErrorCode
    message: str


class WebhookState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(BaseModel):
    """Visible delivery state of a job's or batch's webhook."""

    id: str
    state: WebhookState = WebhookState.pending
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class WebhookPublic(BaseModel):
    """A job's or batch's webhook as clients see it: `pending` from submit on; `id` (the
    `webhook-id` header, stable across retries) and `next_attempt_at` are set once the event
    happens."""

    url: str
    id: str | None = None
    state: WebhookState = WebhookState.pending
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


def webhook_view(
    url: str | None, delivery: WebhookDelivery | None, *, finished: bool
) -> WebhookPublic | None:
    """None when there is no webhook_url, or when a finished subject will send none (it ended
    without an event, e.g. its submit was refused)."""
    if url is None or (delivery is None and finished):
        return None
    state = delivery.model_dump() if delivery else {}
    return WebhookPublic(url=url, **state)


class Job(BaseModel):
    """A stored job; `tenant` and the fields after it are internal."""

    id: str = Field(default_factory=lambda: new_id("job"))
    status: JobStatus = JobStatus.queued
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    cached: bool = False
    batch_id: str | None = None
    custom_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    attempts: int = 0
    result: Completion | None = None
    error: JobError | None = None
    webhook: WebhookDelivery | None = None

    tenant: str
    request: ChatRequest
    webhook_url: str | None = None
    cache_key: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    lease_until: datetime | None = None
    not_before: datetime | None = None  # a retry must not run before this (SQS caps delays)
    retried_at: datetime | None = None  # queued again by retry-failed: its retry budget's start

    def public(self) -> JobPublic:
        """The client's view: the same (already valid) values, so nothing is validated again."""
        fields = {f: getattr(self, f) for f in _PUBLIC_JOB_FIELDS}
        webhook = webhook_view(self.webhook_url, self.webhook, finished=self.status.is_terminal)
        return JobPublic.model_construct(**fields, model=self.request.model, webhook=webhook)


_DERIVED_JOB_FIELDS = ("object", "model", "webhook")


class JobPublic(BaseModel):
    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cached: bool
    batch_id: str | None
    custom_id: str | None
    metadata: dict[str, str]
    attempts: int
    model: str | None = None
    result: CompletionPublic | None
    error: JobError | None
    webhook: WebhookPublic | None


_PUBLIC_JOB_FIELDS = tuple(f for f in JobPublic.model_fields if f not in _DERIVED_JOB_FIELDS)


class BatchCounts(BaseModel):
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


class Batch(BaseModel):
    id: str = Field(default_factory=lambda: new_id("batch"))
    status: BatchStatus = BatchStatus.in_progress
    counts: BatchCounts = Field(default_factory=BatchCounts)
    created_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    webhook: WebhookDelivery | None = None

    tenant: str
    webhook_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None

    def public(self) -> BatchPublic:
        fields = {f: getattr(self, f) for f in _PUBLIC_BATCH_FIELDS}
        finished = self.status in (BatchStatus.completed, BatchStatus.cancelled)
        webhook = webhook_view(self.webhook_url, self.webhook, finished=finished)
        return BatchPublic.model_construct(**fields, webhook=webhook)


_DERIVED_BATCH_FIELDS = ("object", "webhook")


class BatchPublic(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    status: BatchStatus
    counts: BatchCounts
    created_at: datetime
    completed_at: datetime | None
    metadata: dict[str, str]
    webhook: WebhookPublic | None


_PUBLIC_BATCH_FIELDS = tuple(f for f in BatchPublic.model_fields if f not in _DERIVED_BATCH_FIELDS)


class JobPage(BaseModel):
    data: list[JobPublic]
    next_cursor: str | None


class BatchPage(BaseModel):
    """A page of the caller's batches, newest first."""

    data: list[BatchPublic] = Field(description="The batches of this page.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")
