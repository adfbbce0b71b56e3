"""Google Gemini through the google-genai SDK, on the Gemini API or Vertex AI.

One `genai.Client` a process, over our own aiohttp session (HttpOptions.aiohttp_client: the
proxy looked up once, a connection limit; the SDK's own session rereads the environment and
~/.netrc on every call); the SDK's retries are off (one attempt a call). Requests are given as
the SDK's TypedDicts, which it converts for less CPU than its models. What the SDK costs against
plain REST: docs/PERFORMANCE.md and ADR 0003."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp
from google import genai
from google.genai import errors, types

from shared.adapters.llm.base import HttpProvider, Piece
from shared.adapters.llm.http_errors import error_for_status, shorten
from shared.adapters.llm.http_session import new_session
from shared.errors import LLMError, PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, ResponseFormat, Usage

API_VERSION = "v1beta"  # the Gemini API's; Vertex AI keeps the SDK's own
# Where the SDK goes without a base URL, for the proxy lookup (NO_PROXY, HTTPS_PROXY).
GEMINI_API_URL, VERTEX_AI_URL = (
    "https://generativelanguage.googleapis.com",
    "https://aiplatform.googleapis.com",
)
GEMINI_MODEL = re.compile(r"gemini[A-Za-z0-9._-]*")
# Finish reasons that mean the answer was withheld on purpose; asking again will not help.
REFUSALS = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})


@dataclass(frozen=True)
class GeminiConnection:
    """Where and how the client connects: the Gemini API with a key, or Vertex AI (with a
    project and location through Application Default Credentials, or a key in express mode)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    vertexai: bool = False
    project: str | None = None
    location: str | None = None

    @property
    def url(self) -> str:
        return self.base_url or (VERTEX_AI_URL if self.vertexai else GEMINI_API_URL)

    def client_args(self, timeout_s: float, session: aiohttp.ClientSession) -> dict[str, Any]:
        """genai.Client's arguments, explicit where Settings has a value (which may come from
        .env or the Secrets Manager secret, where the SDK would not look)."""
        http = types.HttpOptions(
            base_url=self.base_url,
            api_version=None if self.vertexai else API_VERSION,
            timeout=max(int(timeout_s * 1000), 1),
            retry_options=types.HttpRetryOptions(attempts=1),
            aiohttp_client=session,
        )
        if not self.vertexai:
            return {"vertexai": False, "api_key": self.api_key, "http_options": http}
        if self.project:  # a project (ADC) wins over a key: the SDK takes one or the other
            place = {"project": self.project, "location": self.location}
            return {"vertexai": True, **place, "http_options": http}
        return {"vertexai": True, "api_key": self.api_key, "http_options": http}


@dataclass(frozen=True)
class GeminiClient:
    sdk: genai.Client
    session: aiohttp.ClientSession


class GeminiProvider(HttpProvider[GeminiClient]):
    name = "gemini"

    def __init__(
        self,
        connection: GeminiConnection,
        model: str,
        timeout_s: float,
        *,
        connections: int = 16,
    ) -> None:
        super().__init__(model, timeout_s)
        self.connection, self.connections = connection, connections

    def _open(self) -> GeminiClient:
        session = new_session(self.connections, {}, self.connection.url)
        sdk = genai.Client(**self.connection.client_args(self.timeout_s, session))
        return GeminiClient(sdk, session)

    async def _shut(self, client: GeminiClient) -> None:
        await client.sdk.aio.aclose()  # the SDK's documented close; it leaves our session open
        client.sdk.close()  # its sync transport, never used
        await client.session.close()

    def _model_for(self, request: ChatRequest) -> str:
        """The requested Gemini model, else ours. The API admits only configured names; this is
        the last line: a name that is not a plain model id never reaches the SDK's URL."""
        requested = request.model
        if not (requested and requested.startswith("gemini")):
            return self.model
        if not GEMINI_MODEL.fullmatch(requested):
            raise PermanentLLMError(f"not a Gemini model id: {requested[:80]!r}", provider="gemini")
        return requested

    async def _complete(self, client: GeminiClient, request: ChatRequest, model: str) -> Piece:
        contents, config = _contents(request), _config(request)
        answer = await client.sdk.aio.models.generate_content(
            model=model, contents=contents, config=config
        )
        return _piece(answer)

    async def _stream(
        self, client: GeminiClient, request: ChatRequest, model: str
    ) -> AsyncGenerator[Piece, None]:
        contents, config = _contents(request), _config(request)
        chunks = await client.sdk.aio.models.generate_content_stream(
            model=model, contents=contents, config=config
        )
        async for chunk in chunks:
            yield _piece(chunk)

    def _error_of(self, exc: Exception) -> LLMError | None:
        if isinstance(exc, errors.APIError):
            return _api_error(exc)
        return super()._error_of(exc)

    def _empty_answer(self, finish: str) -> LLMError:
        if finish in REFUSALS:
            message = f"Gemini withheld the answer (finish reason {finish})"
            return PermanentLLMError(message, provider="gemini")
        if finish == "MAX_TOKENS":
            message = "Gemini produced no text within max_tokens; raise max_tokens"
            return PermanentLLMError(message, provider="gemini")
        message = f"Gemini returned no text (finish reason {finish})"
        return TransientLLMError(message, provider="gemini")


def _contents(request: ChatRequest) -> list[types.ContentDict]:
    return [
        {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
        for m in request.messages
        if m.role != "system"
    ]


def _config(request: ChatRequest) -> types.GenerateContentConfigDict | None:
    config: types.GenerateContentConfigDict = {}
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    if system:
        config["system_instruction"] = system
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.max_tokens is not None:
        config["max_output_tokens"] = request.max_tokens
    if request.top_p is not None:
        config["top_p"] = request.top_p
    if request.stop is not None:
        config["stop_sequences"] = request.stop
    if request.seed is not None:
        config["seed"] = request.seed
    return _with_format(config, request.response_format) or None


def _with_format(
    config: types.GenerateContentConfigDict, answer: ResponseFormat | None
) -> types.GenerateContentConfigDict:
    """JSON answers: `response_mime_type` application/json, with the schema when one is given."""
    if answer is None or answer.type == "text":
        return config
    config["response_mime_type"] = "application/json"
    if answer.json_schema is not None:
        config["response_json_schema"] = answer.json_schema.schema_
    return config


def _piece(answer: types.GenerateContentResponse) -> Piece:
    feedback = answer.prompt_feedback
    if feedback is not None and feedback.block_reason:
        reason = _text_of(feedback.block_reason)
        raise PermanentLLMError(f"the prompt was blocked by Gemini ({reason})", provider="gemini")
    candidate = answer.candidates[0] if answer.candidates else None
    content = candidate.content if candidate is not None else None
    parts = (content.parts if content is not None else None) or []
    text = "".join(p.text or "" for p in parts if not p.thought)
    finish = candidate.finish_reason if candidate is not None else None
    return Piece(text, answer.model_version, _usage(answer), _text_of(finish) if finish else None)


def _usage(answer: types.GenerateContentResponse) -> Usage | None:
    meta = answer.usage_metadata
    if meta is None:
        return None
    return Usage(
        input_tokens=meta.prompt_token_count or 0, output_tokens=meta.candidates_token_count or 0
    )


def _text_of(value: Enum | str) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def _api_error(exc: errors.APIError) -> LLMError:
    """Google's error body (`{"error": {"code", "message", "status"}}`) as the SDK read it, and
    the Retry-After of the answer it kept."""
    status = exc.code if isinstance(exc.code, int) else 502
    detail = " ".join(filter(None, [exc.status, shorten(str(exc.message or ""))]))
    headers = getattr(exc.response, "headers", None) or {}
    return error_for_status("gemini", status, detail, headers.get("retry-after"))
