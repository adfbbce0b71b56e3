"""OpenAI's Chat Completions request and answer shapes, and their translation to a chat job.

The request keeps OpenAI's names; what changes the answer is checked once, by the native
`JobCreate` it becomes (so both dialects accept and refuse the same values). Fields this service
cannot honour are refused by name (`unsupported_fields`), never dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """A turn: `developer` is OpenAI's newer name for `system`; content is text or text parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def native(self) -> dict[str, str]:
        role = "system" if self.role == "developer" else self.role
        text = (
            self.content
            if isinstance(self.content, str)
            else "\n".join(part.text for part in self.content)
        )
        return {"role": role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ChatCompletionCreate(BaseModel):
    """Body of POST /openai/v1/chat/completions (OpenAI's fields this service honours)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [EXAMPLE]},
    )

    model: str = Field(description="One of GET /openai/v1/models.", max_length=256)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: Any = None
    top_p: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = Field(None, description="OpenAI's newer name for max_tokens.")
    stop: Any = None
    seed: Any = None
    response_format: Any = None
    n: Literal[1] | None = Field(None, description="Only 1: one answer per request.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Stored in the job's metadata.")
    metadata: dict[str, str] | None = None

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


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """OpenAI's `chat.completion`; `id` is the job's id (GET /v1/jobs/{id} reads it too)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None


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
