"""OpenAI's Chat Completions request and answer shapes, and their translation to a chat job.

The request keeps OpenAI's names; what changes the answer is checked once, by the native
`JobCreate` it becomes (so both dialects accept and refuse the same values). Fields this service
cannot honour are refused by name (400, `param` naming the first), never dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import ConfigDict, Field, ValidationError

from api.openai.shape import Shape
from shared.models import (
    MAX_MESSAGES,
    MAX_METADATA_VALUE_CHARS,
    MAX_MODEL_CHARS,
    ChatRequest,
    Job,
    JobCreate,
    Metadata,
)

NEEDS_A_USER_TURN: dict[str, Any] = {"contains": {"properties": {"role": {"const": "user"}}}}
# Passed to the native job as they are.
SAMPLING_FIELDS: set[str] = {
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "response_format",
}


EXAMPLE: dict[str, Any] = {
    "model": "gemini-2.5-flash",
    "messages": [{"role": "user", "content": "Hi"}],
}


class TextPart(Shape):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    """`text`."""
    text: Annotated[str, Field(min_length=1)]
    """The text."""


class ChatMessage(Shape):
    """A turn: `developer` is OpenAI's newer name for `system`; content is text or text parts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    """`system`, `developer` (as `system`), `user` or `assistant`."""
    content: Annotated[str, Field(min_length=1)] | Annotated[list[TextPart], Field(min_length=1)]
    """The text, or a list of text parts (joined with newlines)."""

    def native(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        text = (
            self.content
            if isinstance(self.content, str)
            else "\n".join(part.text for part in self.content)
        )
        return {"role": role, "content": text}


class StreamOptions(Shape):
    """With `stream: true`: `include_usage` adds a last chunk with the token counts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_usage: bool = False
    """Add a last chunk with `usage` and no choices."""


class ChatCompletionCreate(ChatRequest):
    """Body of POST /openai/v1/chat/completions: OpenAI's fields this service honours. The
    sampling fields are the native API's (same names, same limits); `model` is required."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [EXAMPLE]},
    )

    model: Annotated[str, Field(max_length=MAX_MODEL_CHARS)]  # type: ignore[assignment]
    """One of GET /openai/v1/models."""
    messages: Annotated[  # type: ignore[assignment]
        list[ChatMessage],
        Field(min_length=1, max_length=MAX_MESSAGES, json_schema_extra=NEEDS_A_USER_TURN),
    ]
    """The conversation, oldest first; at least one `user` turn."""
    max_completion_tokens: Annotated[int | None, Field(ge=1, le=65_536)] = None
    """OpenAI's newer name for `max_tokens` (it wins when both are sent)."""
    n: Literal[1] | None = None
    """Only 1: one answer per request."""
    stream: bool = False
    """Answer as server-sent `chat.completion.chunk` events."""
    stream_options: StreamOptions | None = None
    """With `stream`: `{"include_usage": true}`."""
    user: Annotated[str | None, Field(max_length=MAX_METADATA_VALUE_CHARS)] = None
    """The end user, kept in the job's metadata as `user`."""
    metadata: Metadata | None = None
    """String pairs kept in the job's metadata."""
    # Accepted and not acted on: they do not change the answer.
    store: bool | None = None
    """Ignored: every request is stored as a job."""
    service_tier: str | None = None
    """Ignored: one tier."""
    parallel_tool_calls: bool | None = None
    """Ignored: tools are not supported."""
    # Accepted only at the value that changes nothing (OpenAI's defaults).
    frequency_penalty: Annotated[float | None, Field(ge=0, le=0)] = None
    """Only 0: penalties are not supported."""
    presence_penalty: Annotated[float | None, Field(ge=0, le=0)] = None
    """Only 0: penalties are not supported."""

    def job(self) -> JobCreate:
        """The native job this request becomes (its content checked by the native rules: a
        value they refuse is a 400 naming its field, as FastAPI reports any other)."""
        sampling = self.model_dump(include=SAMPLING_FIELDS, exclude_none=True)
        if self.max_completion_tokens is not None:
            sampling["max_tokens"] = self.max_completion_tokens
        metadata = {**(self.metadata or {}), **({"user": self.user} if self.user else {})}
        fields = {
            **sampling,
            "messages": [message.native() for message in self.messages],
            "model": self.model,
            "metadata": metadata,
        }
        try:
            return JobCreate.model_validate(fields, strict=False)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors) from None


class AssistantMessage(Shape):
    """The answer's message."""

    role: Literal["assistant"] = "assistant"
    """`assistant`."""
    content: str
    """The answer."""
    refusal: str | None = None
    """Always null: a refused prompt is an error instead."""


class Choice(Shape):
    """The one answer (`n` is 1)."""

    index: int = 0
    """0."""
    message: AssistantMessage
    """The answer."""
    finish_reason: Literal["stop", "length"] = "stop"
    """`stop`."""
    logprobs: None = None
    """Always null."""


class CompletionUsage(Shape):
    """Tokens the provider counted for the answer (a cache hit shows the cached answer's)."""

    prompt_tokens: int
    """Tokens of the prompt."""
    completion_tokens: int
    """Tokens of the answer."""
    total_tokens: int
    """Both together."""


class ChatCompletion(Shape):
    """OpenAI's `chat.completion`; `id` is the job's id (GET /v1/jobs/{id} reads it too)."""

    id: str
    """The job's id: GET /v1/jobs/{id} reads the same answer."""
    object: Literal["chat.completion"] = "chat.completion"
    """`chat.completion`."""
    created: int
    """When the job was made (Unix seconds)."""
    model: str
    """The model that answered."""
    choices: list[Choice]
    """One choice."""
    usage: CompletionUsage
    """Tokens counted."""
    system_fingerprint: str | None = None
    """Always null."""


class ChunkDelta(Shape):
    """What a chunk adds to the answer."""

    role: Literal["assistant"] | None = None
    """`assistant` in the first chunk."""
    content: str | None = None
    """The next piece of text."""


class ChunkChoice(Shape):
    """The one answer's piece in a chunk."""

    index: int = 0
    """0."""
    delta: ChunkDelta
    """What this chunk adds."""
    finish_reason: Literal["stop", "length"] | None = None
    """`stop` in the last chunk of text, else null."""
    logprobs: None = None
    """Always null."""


class ChatCompletionChunk(Shape):
    """One `data:` event of a streamed answer."""

    id: str
    """The job's id."""
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    """`chat.completion.chunk`."""
    created: int
    """When the job was made (Unix seconds)."""
    model: str
    """The requested model."""
    choices: list[ChunkChoice]
    """One, or none in the usage chunk."""
    usage: CompletionUsage | None = None
    """Only in the last chunk, with `stream_options.include_usage`."""


def usage_of(job: Job) -> CompletionUsage:
    tokens = job.result.usage if job.result else None
    prompt = tokens.input_tokens if tokens else 0
    completion = tokens.output_tokens if tokens else 0
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def completion_of(job: Job, requested_model: str) -> ChatCompletion:
    """A succeeded job as OpenAI's answer."""
    assert job.result is not None
    return ChatCompletion(
        id=job.id,
        created=int(job.created_at.timestamp()),
        model=job.result.model or requested_model,
        choices=[Choice(message=AssistantMessage(content=job.result.content))],
        usage=usage_of(job),
    )
