"""OpenRouter's OpenAI-compatible chat completions API over aiohttp (http_session.py), whole or
streamed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp

from shared.adapters.llm.base import HttpProvider, Piece
from shared.adapters.llm.http_errors import error_for_status, shorten
from shared.adapters.llm.http_session import new_session
from shared.errors import LLMError, PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, Usage


class OpenRouterProvider(HttpProvider[aiohttp.ClientSession]):
    name = "openrouter"

    def __init__(
        self,
        api_key: str,
        model: str,
        base_url: str,
        timeout_s: float,
        *,
        connections: int = 16,
    ) -> None:
        super().__init__(model, timeout_s)
        self.api_key, self.connections = api_key, connections
        self.url = base_url.rstrip("/") + "/chat/completions"

    def _open(self) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {self.api_key}", "X-Title": "chatjobs"}
        return new_session(self.connections, headers, self.url)

    async def _shut(self, client: aiohttp.ClientSession) -> None:
        await client.close()

    def _model_for(self, request: ChatRequest) -> str:
        return request.model if request.model and "/" in request.model else self.model

    async def _complete(
        self, client: aiohttp.ClientSession, request: ChatRequest, model: str
    ) -> Piece:
        payload = _payload(request, model)
        async with client.post(self.url, json=payload, allow_redirects=False) as response:
            raw = await response.read()
            if response.status != 200:
                raise _status_error(response.status, response.headers, raw)
        return _answer(_object(raw))

    async def _stream(
        self, client: aiohttp.ClientSession, request: ChatRequest, model: str
    ) -> AsyncGenerator[Piece, None]:
        payload = _payload(request, model) | {"stream": True, "stream_options": USAGE}
        async with client.post(self.url, json=payload, allow_redirects=False) as response:
            if response.status != 200:
                raise _status_error(response.status, response.headers, await response.read())
            async for line in response.content:
                data = _sse_data(line)
                if data == "[DONE]":
                    return
                if data is not None:
                    yield _chunk(_object(data))

    def _empty_answer(self, finish: str) -> LLMError:
        if finish == "content_filter":
            message = "the answer was withheld by a content filter"
            return PermanentLLMError(message, provider="openrouter")
        if finish == "length":
            message = "no text within max_tokens; raise max_tokens"
            return PermanentLLMError(message, provider="openrouter")
        return TransientLLMError(f"empty answer (finish reason {finish})", provider="openrouter")


USAGE = {"include_usage": True}  # the last streamed chunk carries the token counts


def _payload(request: ChatRequest, model: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.max_tokens is not None:
        payload["max_tokens"] = request.max_tokens
    options = {"top_p": request.top_p, "stop": request.stop, "seed": request.seed}
    payload |= {name: value for name, value in options.items() if value is not None}
    if request.response_format is not None:  # OpenAI's own shape, as the request gave it
        payload["response_format"] = request.response_format.model_dump(exclude_none=True)
    return payload


def _status_error(status: int, headers: Mapping[str, str], raw: bytes) -> LLMError:
    try:
        error = json.loads(raw).get("error", {})
        detail = str(error.get("message") or error)
    except (ValueError, AttributeError):
        detail = shorten(raw.decode(errors="replace"))
    return error_for_status("openrouter", status, detail, headers.get("retry-after"))


def _object(raw: bytes | str) -> dict[str, Any]:
    """A JSON object, or an upstream error OpenRouter answered with status 200."""
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise TransientLLMError("unexpected response shape", provider="openrouter")
    if "error" in body and not body.get("choices"):
        raise _embedded_error(body["error"])
    return body


def _embedded_error(error: Any) -> LLMError:
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message", error) if isinstance(error, dict) else error
    status = code if isinstance(code, int) else 502
    return error_for_status("openrouter", status, str(message))


def _answer(body: dict[str, Any]) -> Piece:
    try:
        choice = body["choices"][0]
        content, finish = choice["message"].get("content") or "", choice.get("finish_reason")
        return Piece(content, body.get("model"), _usage(body), str(finish) if finish else None)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise TransientLLMError("unexpected response shape", provider="openrouter") from exc


def _chunk(body: dict[str, Any]) -> Piece:
    """One `chat.completion.chunk`: a delta of text; the last ones a finish reason, usage."""
    try:
        choices = body.get("choices") or [{}]
        delta, finish = choices[0].get("delta") or {}, choices[0].get("finish_reason")
        text = delta.get("content") or ""
        return Piece(text, body.get("model"), _usage(body), str(finish) if finish else None)
    except (TypeError, AttributeError, ValueError) as exc:
        raise TransientLLMError("unexpected response shape", provider="openrouter") from exc


def _usage(body: dict[str, Any]) -> Usage | None:
    usage = body.get("usage")
    if not usage:
        return None
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


def _sse_data(line: bytes) -> str | None:
    """The `data:` field of one server-sent-event line; None for comments, blanks, others."""
    text = line.decode().rstrip("\r\n")
    if not text.startswith("data:"):
        return None
    return text[5:].removeprefix(" ")
