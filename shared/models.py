"""Domain models shared by the API and the workers.

`*Create` models are what clients send; `Job` and `Batch` are the stored records;
`*Public` models are what clients see (no tenant, no internal bookkeeping).
"""

from __future__ import annotations

import json
import re
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

from shared.keys import DEFAULT_PRIORITY, KeyHold, Priority

MAX_MESSAGES = 100
MAX_CONTENT_CHARS = 100_000
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_CUSTOM_ID_CHARS = 64
MAX_URL_CHARS = 2048
MAX_MODEL_CHARS = 200

# What a webhook_url may be, as a JSON Schema pattern (the document states it, and requests are
# checked against the very same one): http(s), a host name (ASCII labels, the last one starting
# with a letter), a dotted IPv4 address or a bracketed IPv6 one, an optional port 1-65535, no
# user:password, then a path, query or fragment of printable ASCII. Resolving the host and
# refusing internal addresses (SSRF checks) come later.
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = "[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(  # the forms of RFC 4291 2.2 (1) and (2), in brackets as URLs write them
    (
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        f"(?:{_H16}:){{1,6}}:{_H16}",
        *(f"(?:{_H16}:){{1,{n}}}(?::{_H16}){{1,{7 - n}}}" for n in range(5, 0, -1)),
        f":(?:(?::{_H16}){{1,7}}|:)",
    )
)
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
WEBHOOK_URL_PATTERN = (
    f"^https?://(?:(?:{_LABEL}\\.)*{_TOP_LABEL}\\.?|(?:{_OCTET}\\.){{3}}{_OCTET}|\\[(?:{_IPV6})\\])"
    f"(?::{_PORT})?(?:[/?#][!-~]*)?$"
)
_WEBHOOK_URL = re.compile(WEBHOOK_URL_PATTERN)

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_SCHEMA_CHARS = 100_000
SEED_BOUND = 2**31  # Gemini's seed is a 32-bit integer; OpenAI's takes any 64-bit one


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class JobStatus(StrEnum):
    """`queued` → `running` → `succeeded` | `failed`; `queued` → `cancelled`."""

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
    """`in_progress` until every job is finished (`completed`); `cancelling` → `cancelled`."""

    in_progress = "in_progress"
    completed = "completed"
    cancelling = "cancelling"
    cancelled = "cancelled"


# What clients send is validated strictly: no coercion ("yes" is not a bool, "1" not a number, true
# not an integer), so a typo answers 422 naming the field instead of meaning something else.
REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True)


class Message(BaseModel):
    """One turn of the conversation."""

    model_config = REQUEST_CONFIG

    role: Literal["system", "user", "assistant"] = Field(
        description="Who speaks: `system` (instructions), `user` or `assistant` (earlier answers).",
        examples=["user"],
    )
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_CHARS)] = Field(
        description=f"The text, 1 to {MAX_CONTENT_CHARS} characters.",
        examples=["Summarize the plot of Hamlet in one sentence."],
    )


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
    Field(
        description=f"Up to {MAX_METADATA_KEYS} string pairs (keys up to "
        f"{MAX_METADATA_KEY_CHARS} characters, values up to {MAX_METADATA_VALUE_CHARS}), stored "
        "and echoed back; they do not change the answer.",
        examples=[{"ticket": "T-1042"}],
    ),
]


def _http_url(url: str) -> str:
    if _WEBHOOK_URL.search(url) is None:
        raise ValueError(
            "must be an http:// or https:// URL with a host name (ASCII) or an IP address, "
            "an optional port 1-65535, no user:password, and printable ASCII after the host "
            "(percent-encode the rest)"
        )
    return url


HttpUrl = Annotated[
    str,
    Field(max_length=MAX_URL_CHARS, json_schema_extra={"pattern": WEBHOOK_URL_PATTERN}),
    AfterValidator(_http_url),
]
WEBHOOK_URL_DESCRIPTION = (
    f"Where the finishing event is POSTed, signed (Standard Webhooks). Up to {MAX_URL_CHARS} "
    "characters of http(s) URL matching the pattern; a host that resolves to a private, "
    "loopback, link-local or metadata address is refused with 422 (unless the operator set "
    "WEBHOOK_ALLOW_PRIVATE)."
)
WebhookUrl = Annotated[
    HttpUrl | None,
    Field(description=WEBHOOK_URL_DESCRIPTION, examples=["https://hooks.example.com/chatjobs"]),
]
CacheFlag = Annotated[
    bool,
    Field(
        description="Answer from the result cache when the same request (model, messages, "
        "temperature, max_tokens) was answered before (200, `cached: true`); false always "
        "calls the LLM. Successes are cached either way.",
        examples=[True],
    ),
]


class JsonSchemaFormat(BaseModel):
    """OpenAI's `json_schema` object: the JSON Schema the answer must follow."""

    model_config = ConfigDict(extra="forbid", strict=True, serialize_by_alias=True)

    name: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            examples=["answer"],
            description="The schema's name: 1 to 64 of A-Z a-z 0-9 _ -.",
        ),
    ]
    description: Annotated[
        str | None, Field(max_length=1_000, description="What the schema is for (optional).")
    ] = None
    schema_: Annotated[
        dict[str, Any],
        Field(
            alias="schema",
            description="A JSON Schema object (Gemini gets it as `response_json_schema`).",
            examples=[{"type": "object", "properties": {"city": {"type": "string"}}}],
        ),
    ]
    strict: bool | None = Field(None, description="OpenAI's strict schema adherence (optional).")

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

    type: Literal["text", "json_object", "json_schema"] = Field(
        description="`text`, `json_object` or `json_schema`.", examples=["json_object"]
    )
    json_schema: JsonSchemaFormat | None = Field(
        None, description="The schema, with `type: json_schema` (and only then)."
    )

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

    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)] = Field(
        description=f"The conversation, oldest first: 1 to {MAX_MESSAGES} messages, at least one "
        "from `user`.",
        json_schema_extra={"contains": {"properties": {"role": {"const": "user"}}}},
        examples=[[{"role": "user", "content": "Summarize the plot of Hamlet in one sentence."}]],
    )
    model: Annotated[str | None, Field(max_length=MAX_MODEL_CHARS)] = Field(
        None,
        description="Which model answers: one of the models the operator configured (listed in "
        "this document): the primary (GEMINI_MODEL, the default when absent), the fallback "
        "(OPENROUTER_MODEL) or a named alias (MODEL_ALIASES). A Gemini model is tried on Gemini "
        "first and goes to OpenRouter's fallback model when Gemini keeps failing; any other "
        "model goes to OpenRouter. Any other name answers 422 naming `model`.",
        examples=["gemini-2.5-flash"],
    )
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = Field(  # 1 is fine, "1" not
        None,
        description="Sampling temperature, 0 to 2 (a JSON number); absent: the model's default.",
        examples=[0.2],
    )
    max_tokens: Annotated[int | None, Field(ge=1, le=65_536)] = Field(
        None,
        description="Most tokens the answer may have: a JSON integer (256, not 256.0) from 1 to "
        "65536; absent: the model's default.",
        examples=[256],
    )
    top_p: Annotated[
        float | None,
        Field(
            ge=0.0,
            le=1.0,
            description="Nucleus sampling, 0 to 1; absent: the model's default.",
            examples=[0.9],
        ),
    ] = None
    stop: Annotated[
        StopSequences | None,
        BeforeValidator(_as_list, json_schema_input_type=StopSequence | StopSequences | None),
        Field(
            description=f"Text at which the answer stops: a string or up to "
            f"{MAX_STOP_SEQUENCES} strings.",
            examples=[["\n\n"]],
        ),
    ] = None
    seed: Annotated[
        int | None,
        Field(
            ge=-SEED_BOUND,
            lt=SEED_BOUND,
            description="Asks the provider for a repeatable answer (best effort).",
            examples=[42],
        ),
    ] = None
    response_format: ResponseFormat | None = Field(
        None,
        description='`{"type": "json_object"}` (or `json_schema`) for a JSON answer; absent: text.',
        examples=[{"type": "json_object"}],
    )

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


LATER_FIELDS = frozenset({"top_p", "stop", "seed", "response_format", "priority"})
_CHAT_FIELDS = tuple(ChatRequest.model_fields)


JOB_EXAMPLE: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "Summarize the plot of Hamlet."},
    ],
    "model": "gemini-2.5-flash",
    "temperature": 0.2,
    "max_tokens": 256,
    "webhook_url": "https://hooks.example.com/chatjobs",
    "metadata": {"ticket": "T-1042"},
    "cache": True,
}


class JobOptions(ChatRequest):
    """What a job adds to its chat request, in every way of submitting one (a single job, a
    batch's request): where to report, what to echo back, whether the cache may answer."""

    webhook_url: WebhookUrl = None
    metadata: Metadata = Field(default_factory=dict)
    cache: CacheFlag = True


class JobCreate(JobOptions):
    """Body of POST /v1/jobs: a chat request, where to report, what to echo back."""

    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    priority: Priority | None = Field(
        None,
        description="`high`, `normal` or `low`: workers take higher priorities first; null: the "
        "API key's default (`normal` for keys from API_KEYS).",
        examples=["normal"],
    )


class BatchItem(JobOptions):
    """One request of a batch: a job body plus the caller's unique `custom_id`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"custom_id": "q-1", "messages": [{"role": "user", "content": "Hi"}]},
            ]
        }
    )

    custom_id: Annotated[str, Field(min_length=1, max_length=MAX_CUSTOM_ID_CHARS)] = Field(
        description=f"The caller's name for this request, unique in the batch (1 to "
        f"{MAX_CUSTOM_ID_CHARS} characters); results and jobs carry it.",
        examples=["q-1"],
    )


class BatchCreate(BaseModel):
    """JSON body of POST /v1/batches (NDJSON bodies carry only the `requests`)."""

    model_config = REQUEST_CONFIG | ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "requests": [
                        {"custom_id": "q-1", "messages": [{"role": "user", "content": "Hi"}]},
                        {"custom_id": "q-2", "messages": [{"role": "user", "content": "Bye"}]},
                    ],
                    "webhook_url": "https://hooks.example.com/chatjobs",
                    "metadata": {"run": "nightly"},
                }
            ]
        }
    )

    requests: Annotated[list[BatchItem], Field(min_length=1)] = Field(
        description="The requests, at least one and at most BATCH_MAX_REQUESTS; each becomes a "
        "job. A bad one refuses the whole batch with 422 naming its `custom_id`.",
        examples=[[{"custom_id": "q-1", "messages": [{"role": "user", "content": "Hi"}]}]],
    )
    webhook_url: WebhookUrl = None
    metadata: Metadata = Field(default_factory=dict)
    priority: Priority | None = Field(
        None,
        description="`high`, `normal` or `low`, for every job of the batch: workers take "
        "higher priorities first; null: the API key's default (`normal` for keys from API_KEYS).",
        examples=["normal"],
    )


class Usage(BaseModel):
    """Tokens the provider counted for this answer."""

    input_tokens: int = Field(0, description="Tokens of the prompt.", examples=[12])
    output_tokens: int = Field(0, description="Tokens of the answer.", examples=[31])


class CompletionPublic(BaseModel):
    """An answer as clients see it: the job's `result`."""

    content: str = Field(
        description="The model's answer.",
        examples=["Prince Hamlet avenges his father's murder, and nearly everyone dies."],
    )
    provider: str = Field(
        description="Who answered: `gemini`, `openrouter` (the fallback) or `offline` (no LLM "
        "key is configured: canned text).",
        examples=["gemini"],
    )
    model: str = Field(description="The model the provider used.", examples=["gemini-2.5-flash"])
    usage: Usage = Field(default_factory=Usage, description="Tokens of this answer.")
    latency_ms: int = Field(
        0, description="How long the LLM call that answered took, in ms.", examples=[412]
    )


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
    """Why a job failed, or (`retrying`) why it waits for another attempt."""

    code: JobErrorCode = Field(
        description="`retrying` (not final: the job waits for its next attempt), "
        "`llm_rejected` (a provider refused the prompt), `llm_unavailable` (every provider kept "
        "failing until the retry budget ran out), `attempts_exhausted` (delivered more times "
        "than JOB_MAX_ATTEMPTS), `queue_unavailable` (the queue refused the job at submit).",
        examples=["llm_rejected"],
    )
    message: str = Field(
        description="What happened, for people.", examples=["gemini: prompt blocked (SAFETY)"]
    )


class WebhookState(StrEnum):
    """`pending` (not sent yet, or waiting for a retry), `delivered` (a 2xx), `failed` (gave up)."""

    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookAttempt(BaseModel):
    """One delivery attempt, as the operator console lists them."""

    at: datetime = Field(description="When it was made.")
    status_code: int | None = Field(None, description="The receiver's HTTP status; null: none.")
    error: str | None = Field(None, description="Why it failed; null: delivered.")


WEBHOOK_HISTORY = 10  # attempts a delivery remembers (the latest)


class WebhookDelivery(BaseModel):
    """Visible delivery state of a job's or batch's webhook."""

    id: str
    state: WebhookState = WebhookState.pending
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    history: list[WebhookAttempt] = Field(default_factory=list)  # the latest attempts


class WebhookPublic(BaseModel):
    """A job's or batch's webhook as clients see it: `pending` from submit on; `id` (the
    `webhook-id` header, stable across retries) and `next_attempt_at` are set once the event
    happens."""

    url: str = Field(
        description="The `webhook_url` events go to.",
        examples=["https://hooks.example.com/chatjobs"],
    )
    id: str | None = Field(
        None,
        description="The `webhook-id` header, the same on every attempt; null until the event.",
        examples=["msg_2f6c1f0e9a7d4b1c8e3a5d7f9b0c2e4a"],
    )
    state: WebhookState = Field(WebhookState.pending, description="Where delivery stands.")
    attempts: int = Field(0, description="Attempts made so far.", examples=[1])
    last_status_code: int | None = Field(
        None, description="The receiver's HTTP status on the last attempt.", examples=[200]
    )
    last_error: str | None = Field(
        None,
        description="Why the last attempt failed (status, timeout, refused address).",
        examples=["HTTP 503"],
    )
    next_attempt_at: datetime | None = Field(
        None,
        description="When the next attempt is due (WEBHOOK_RETRY_SCHEDULE); null when none is.",
        examples=["2026-01-05T10:15:30Z"],
    )


def webhook_view(
    url: str | None, delivery: WebhookDelivery | None, *, finished: bool
) -> WebhookPublic | None:
    """None when there is no webhook_url, or when a finished subject will send none (it ended
    without an event, e.g. its submit was refused)."""
    if url is None or (delivery is None and finished):
        return None
    state = delivery.model_dump() if delivery else {}
    return WebhookPublic(url=url, **state)


class AttemptOutcome(StrEnum):
    """How an attempt that did not succeed ended."""

    retrying = "retrying"  # a transient error: the job was queued again for another attempt
    failed = "failed"  # the job ended failed with it
    lost = "lost"  # its worker was gone (lease lapsed, or the process restarted): taken back


ATTEMPT_LOG_LENGTH = 20  # attempts a job remembers (the latest)
ATTEMPT_MESSAGE_CHARS = 300


def _shortened(message: str | None) -> str | None:
    if message is None or len(message) <= ATTEMPT_MESSAGE_CHARS:
        return message
    return message[: ATTEMPT_MESSAGE_CHARS - 1] + "…"


class AttemptRecord(BaseModel):
    """One attempt of a job that did not succeed, as the operator console lists them. A job's
    successful attempt is described by the job itself (`completed_at`, `result`), so a job
    answered the first time has none."""

    attempt: int = Field(description="Its number (`attempts` after its claim).", examples=[1])
    started_at: datetime = Field(description="When a worker claimed the job for it.")
    ended_at: datetime = Field(
        description="When it ended: requeued, failed, or (`lost`) found lost and taken back."
    )
    outcome: AttemptOutcome = Field(
        description="`retrying` (a transient error: queued again), `failed` (the job failed "
        "with it) or `lost` (its worker was gone: the lease lapsed or the process restarted).",
        examples=["retrying"],
    )
    provider: str | None = Field(
        None, description="The provider whose error ended it, if one answered.", examples=["gemini"]
    )
    code: str | None = Field(
        None,
        description="What went wrong: `http_<status>` (the provider answered that status), "
        "`provider_error` (a provider failed otherwise), `timeout`, `internal_error`, "
        "`lease_expired`, `process_restarted`, or, for `failed`, the job's error code.",
        examples=["http_503"],
    )
    message: Annotated[str | None, AfterValidator(_shortened)] = Field(
        None,
        description=f"What happened, for people (up to {ATTEMPT_MESSAGE_CHARS} characters).",
        examples=["gemini: HTTP 503 (overloaded)"],
    )


def _no_attempt_log(log: list[AttemptRecord]) -> bool:
    return not log


JOB_ID_EXAMPLE = "job_5f0c2a9e8b7d4c3a9f1e6d2b8a4c7e10"
BATCH_ID_EXAMPLE = "batch_9a1b3c5d7e9f4a2b8c6d0e1f3a5b7c9d"
CREATED_EXAMPLE = "2026-01-05T10:15:00.123456Z"


class JobFields(BaseModel):
    """What a job is to everyone who sees it: JobPublic (its owner) and Job (the store) share
    these declarations; each adds its own (the public view's `webhook` summary, the stored
    job's internals)."""

    id: str = Field(
        default_factory=lambda: new_id("job"),
        description="The job's id.",
        examples=[JOB_ID_EXAMPLE],
    )
    status: JobStatus = Field(
        JobStatus.queued, description="Where the job stands.", examples=["succeeded"]
    )
    created_at: datetime = Field(
        default_factory=utcnow, description="When it was accepted.", examples=[CREATED_EXAMPLE]
    )
    updated_at: datetime = Field(
        default_factory=utcnow,
        description="When it last changed.",
        examples=["2026-01-05T10:15:01.020304Z"],
    )
    completed_at: datetime | None = Field(
        None,
        description="When it finished; null until then.",
        examples=["2026-01-05T10:15:01.020304Z"],
    )
    cached: bool = Field(
        False, description="Answered from the result cache (no LLM call).", examples=[False]
    )
    coalesced: bool = Field(
        False,
        description="Answered by joining an identical request of the same key that was in flight"
        " (its result or error, no LLM call of its own).",
        examples=[False],
    )
    batch_id: str | None = Field(
        None,
        description="The batch it belongs to; null for a single job.",
        examples=[BATCH_ID_EXAMPLE],
    )
    custom_id: str | None = Field(
        None,
        description="The batch request's `custom_id`; null for a single job.",
        examples=["q-1"],
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="The `metadata` it was submitted with.",
        examples=[{"ticket": "T-1042"}],
    )
    attempts: int = Field(
        0,
        description="How many times a worker took it (retries and redeliveries count).",
        examples=[1],
    )
    result: CompletionPublic | None = Field(
        None, description="The answer once `succeeded`; else null."
    )
    error: JobError | None = Field(
        None, description="Why it failed (or, with `retrying`, why it waits); else null."
    )
    priority: Priority = Field(
        DEFAULT_PRIORITY, description="The priority it was queued with.", examples=["normal"]
    )


class Job(JobFields):
    """A stored job: the fields every view shows, then its internals."""

    result: Completion | None = None
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
    # the identical job in flight that this one joined (shared/coalescing.py): while it is
    # queued with this set, it waits for that job's outcome instead of calling the LLM
    coalesced_with: str | None = None
    key_id: str | None = None  # the run-time API key that submitted it (None: a bootstrap key)
    priority: Priority = DEFAULT_PRIORITY
    key_hold: KeyHold | None = None  # what it took from its key's limits (shared/key_usage.py)
    # seconds it waited, queued, for room in the providers' shared quotas (no attempt spent):
    # its retry budget is longer by as much (shared/retry.py)
    quota_waited_s: float = 0.0
    # the latest attempts that did not succeed, oldest first (shared/transitions.py writes it);
    # left out of the stored JSON while empty, so a job answered the first time is no bigger
    attempt_log: list[AttemptRecord] = Field(default_factory=list, exclude_if=_no_attempt_log)

    @property
    def waiting_on(self) -> str | None:
        """The job whose outcome this one waits for, if it is a follower still waiting."""
        return self.coalesced_with if self.status is JobStatus.queued else None

    def public(self) -> JobPublic:
        """The client's view: the same (already valid) values, so nothing is validated again."""
        fields = {f: getattr(self, f) for f in _PUBLIC_JOB_FIELDS}
        webhook = webhook_view(self.webhook_url, self.webhook, finished=self.status.is_terminal)
        return JobPublic.model_construct(**fields, model=self.request.model, webhook=webhook)


_DERIVED_JOB_FIELDS = ("object", "model", "webhook")


class JobPublic(JobFields):
    """A chat job as its owner sees it."""

    # every field is always in the answer, defaulted or not
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    object: Literal["job"] = Field("job", description="Always `job`.")
    model: str | None = Field(
        None,
        description="The `model` it was submitted with; null: the primary.",
        examples=["gemini-2.5-flash"],
    )
    webhook: WebhookPublic | None = Field(
        None, description="Delivery of its webhook; null when it has no `webhook_url`."
    )


_PUBLIC_JOB_FIELDS = tuple(f for f in JobPublic.model_fields if f not in _DERIVED_JOB_FIELDS)


class BatchCounts(BaseModel):
    """The batch's jobs by status; exact, and they add up to `total`."""

    total: int = Field(0, description="Jobs in the batch.", examples=[2])
    queued: int = Field(0, description="Waiting for a worker.", examples=[0])
    running: int = Field(0, description="Being answered now.", examples=[0])
    succeeded: int = Field(0, description="Answered.", examples=[2])
    failed: int = Field(0, description="Finished without an answer.", examples=[0])
    cancelled: int = Field(0, description="Cancelled before they ran.", examples=[0])

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


class BatchFields(BaseModel):
    """What a batch is to everyone who sees it (BatchPublic, Batch)."""

    id: str = Field(
        default_factory=lambda: new_id("batch"),
        description="The batch's id.",
        examples=[BATCH_ID_EXAMPLE],
    )
    status: BatchStatus = Field(
        BatchStatus.in_progress, description="Where the batch stands.", examples=["completed"]
    )
    counts: BatchCounts = Field(default_factory=BatchCounts, description="Its jobs by status.")
    created_at: datetime = Field(
        default_factory=utcnow, description="When it was accepted.", examples=[CREATED_EXAMPLE]
    )
    completed_at: datetime | None = Field(
        None,
        description="When its last job finished (or it was cancelled); null until then.",
        examples=["2026-01-05T10:16:02.000001Z"],
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="The `metadata` it was submitted with.",
        examples=[{"run": "nightly"}],
    )


class Batch(BatchFields):
    """A stored batch: the fields every view shows, then its internals."""

    webhook: WebhookDelivery | None = None

    tenant: str
    webhook_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    key_id: str | None = None
    priority: Priority = DEFAULT_PRIORITY

    def public(self) -> BatchPublic:
        fields = {f: getattr(self, f) for f in _PUBLIC_BATCH_FIELDS}
        finished = self.status in (BatchStatus.completed, BatchStatus.cancelled)
        webhook = webhook_view(self.webhook_url, self.webhook, finished=finished)
        return BatchPublic.model_construct(**fields, webhook=webhook)


_DERIVED_BATCH_FIELDS = ("object", "webhook")


class BatchPublic(BatchFields):
    """A batch as its owner sees it: its status and exact counts (its jobs are listed with
    `GET /v1/jobs?batch_id=`, its results streamed by `GET /v1/batches/{id}/results`)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    object: Literal["batch"] = Field("batch", description="Always `batch`.")
    webhook: WebhookPublic | None = Field(
        None, description="Delivery of `batch.completed`; null when it has no `webhook_url`."
    )


_PUBLIC_BATCH_FIELDS = tuple(f for f in BatchPublic.model_fields if f not in _DERIVED_BATCH_FIELDS)


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    data: list[JobPublic] = Field(description="The jobs of this page.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page.",
        examples=["WyIyMDI2LTAxLTA1VDEwOjE1OjAwLjEyMzQ1NiswMDowMCIsICJqb2JfNWYwYyJd"],
    )


class BatchPage(BaseModel):
    """One page of batches, newest first."""

    data: list[BatchPublic] = Field(description="The batches of this page.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
