"""OpenAI's Chat Completions request and answer shapes, and their translation to a chat job.

The request keeps OpenAI's names; what changes the answer is checked once, by the native
`JobCreate` it becomes (so both dialects accept and refuse the same values). Fields this service
cannot honour are refused by name (`unsupported_fields`), never dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import ConfigDict, Field, ValidationError

from api.openai.shape import Shape
from shared.models import Job, JobCreate

# Accepted and not acted on: they do not change the answer.
IGNORED_FIELDS = frozenset({"store", "service_tier", "parallel_tool_calls"})
# Accepted only at the value that changes nothing (OpenAI's defaults).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logprobs": (False,),
}


EXAMPLE: dict[str, Any] = {
    "model": "gemini-2.5-flash",
    "messages": [{"role": "user", "content": "Hi"}],
}


class TextPart(Shape):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    """`text`."""
    text: str
    """The text."""


class ChatMessage(Shape):
    """A turn: `developer` is OpenAI's newer name for `system`; content is text or text parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    """`system`, `developer` (as `system`), `user` or `assistant`."""
    content: str | list[TextPart]
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

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    """Add a last chunk with `usage` and no choices."""


class ChatCompletionCreate(Shape):
    """Body of POST /openai/v1/chat/completions (OpenAI's fields this service honours)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [EXAMPLE]},
    )

    model: str = Field(description="One of GET /openai/v1/models.", max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    """The conversation, oldest first; at least one `user` turn."""
    temperature: Any = None
    """Sampling temperature, 0 to 2."""
    top_p: Any = None
    """Nucleus sampling, 0 to 1."""
    max_tokens: Any = None
    """Most tokens the answer may have, 1 to 65536."""
    max_completion_tokens: Any = Field(None, description="OpenAI's newer name for max_tokens.")
    stop: Any = None
    """A string or up to 4 strings at which the answer stops."""
    seed: Any = None
    """Asks the provider for a repeatable answer (best effort)."""
    response_format: Any = None
    """`{\"type\": \"json_object\"}` or `json_schema` for JSON."""
    n: Literal[1] | None = Field(None, description="Only 1: one answer per request.")
    stream: bool = False
    """Answer as server-sent `chat.completion.chunk` events."""
    stream_options: StreamOptions | None = None
    """With `stream`: `{\"include_usage\": true}`."""
    user: str | None = Field(None, max_length=256, description="Stored in the job's metadata.")
    metadata: dict[str, str] | None = None
    """String pairs kept in the job's metadata."""

    def unsupported_fields(self) -> list[str]:
        """Fields sent that would change the answer and that this service cannot honour."""
        refused = []
        for name, value in (self.model_extra or {}).items():
            if value is None or name in IGNORED_FIELDS:
                continue
            if name in NEUTRAL_VALUES and value in NEUTRAL_VALUES[name]:
                continue
            refused.append(name)
        return sorted(refused)

    def job(self) -> JobCreate:
        """The native job this request becomes; a value the native API refuses is a 400 naming
        its field, as FastAPI reports any other."""
        fields: dict[str, Any] = {
            "messages": [message.native() for message in self.messages],
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens
            if self.max_completion_tokens is None
            else self.max_completion_tokens,
            "stop": self.stop,
            "seed": self.seed,
            "response_format": self.response_format,
            "metadata": {**(self.metadata or {}), **({"user": self.user} if self.user else {})},
        }
        try:
            return JobCreate.model_validate({k: v for k, v in fields.items() if v is not None})
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
