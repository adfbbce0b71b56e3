"""OpenRouter's OpenAI-compatible chat completions API (see http_session.py for the client)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from shared.adapters.llm.http_errors import error_for_status, shorten
from shared.adapters.llm.http_session import Answer, new_session, post_json
from shared.errors import LLMError, PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, Completion, Usage


class OpenRouterProvider:
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
        self.api_key, self.model, self.timeout_s = api_key, model, timeout_s
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.connections = connections
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the HTTP client once for this process."""
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.api_key}", "X-Title": "chatjobs"}
            self._http = new_session(self.connections, headers, self.url)

    async def complete(self, request: ChatRequest) -> Completion:
        model = request.model if request.model and "/" in request.model else self.model
        started = time.monotonic()
        body = await self._post(_payload(request, model))
        latency_ms = int((time.monotonic() - started) * 1000)
        return _completion(body, model, latency_ms)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._http is None:
            await self.start()
        assert self._http is not None
        answer = await post_json(
            self._http, self.url, payload, provider="openrouter", timeout_s=self.timeout_s
        )
        return _body_of(answer)


def _payload(request: ChatRequest, model: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.max_tokens is not None:
        payload["max_tokens"] = request.max_tokens
    return payload


def _body_of(response: Answer) -> dict[str, Any]:
    if response.status != 200:
        raise error_for_status(
            "openrouter",
            response.status,
            _error_detail(response),
            response.headers.get("retry-after"),
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientLLMError("malformed JSON in the response", provider="openrouter") from exc
    if not isinstance(body, dict):
        raise TransientLLMError("unexpected response shape", provider="openrouter")
    if "error" in body and not body.get("choices"):
        raise _embedded_error(body["error"])
    return body


def _error_detail(response: Answer) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") or error)
    except (ValueError, AttributeError):
        return shorten(response.text)


def _embedded_error(error: Any) -> LLMError:
    """OpenRouter can answer 200 with an upstream error in the body."""
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message", error) if isinstance(error, dict) else error
    status = code if isinstance(code, int) else 502
    return error_for_status("openrouter", status, str(message))


def _completion(body: dict[str, Any], model: str, latency_ms: int) -> Completion:
    try:
        choice = body["choices"][0]
        content = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
        usage = body.get("usage") or {}
        tokens = Usage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise TransientLLMError("unexpected response shape", provider="openrouter") from exc
    if not content:
        raise _empty_answer(str(finish))
    used = str(body.get("model") or model)
    return Completion(
        content=content, provider="openrouter", model=used, usage=tokens, latency_ms=latency_ms
    )


def _empty_answer(finish: str) -> LLMError:
    if finish == "content_filter":
        return PermanentLLMError(
            "the answer was withheld by a content filter", provider="openrouter"
        )
    if finish == "length":
        return PermanentLLMError(
            "no text within max_tokens; raise max_tokens", provider="openrouter"
        )
    return TransientLLMError(f"empty answer (finish reason {finish})", provider="openrouter")
