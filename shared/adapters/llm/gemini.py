"""Google Gemini's `generateContent` REST API.

Measured against the google-genai SDK on the same stub server (docs/PERFORMANCE.md): the SDK
spent several times the CPU of the HTTP exchange itself building and parsing its own models,
which capped a worker near 200 jobs/s. The request and answer are small JSON documents; this
module builds and reads them directly, with the same error mapping (see http_session.py for the
client).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from shared.adapters.llm.http_errors import error_for_status, shorten
from shared.adapters.llm.http_session import Answer, new_session, post_json
from shared.errors import LLMError, PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, Completion, Usage

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
# Finish reasons that mean the answer was withheld on purpose; asking again will not help.
GEMINI_MODEL = re.compile(r"gemini[A-Za-z0-9._-]*")
REFUSALS = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})


class GeminiProvider:
    name = "gemini"

    def __init__(
        self,
        api_key: str,
        model: str,
        base_url: str | None,
        timeout_s: float,
        *,
        connections: int = 16,
    ) -> None:
        self.api_key, self.model, self.timeout_s = api_key, model, timeout_s
        self.models_url = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/{API_VERSION}/models/"
        self.connections = connections
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the HTTP client once for this process. One attempt per call: FallbackLLM and
        the job retries decide what happens after a failure."""
        if self._http is None:
            headers = {"x-goog-api-key": self.api_key}
            self._http = new_session(self.connections, headers, self.models_url)

    async def complete(self, request: ChatRequest) -> Completion:
        model = _pick_model(request.model, self.model)
        started = time.monotonic()
        url = f"{self.models_url}{quote(model, safe='')}:generateContent"
        body = await self._post(url, _payload(request))
        latency_ms = int((time.monotonic() - started) * 1000)
        return _completion(body, model, latency_ms)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self._http is None:
            await self.start()
        assert self._http is not None
        answer = await post_json(
            self._http, url, payload, provider="gemini", timeout_s=self.timeout_s
        )
        return _body_of(answer)


def _pick_model(requested: str | None, default: str) -> str:
    """The requested Gemini model, else ours. The API admits only configured names; this is the
    last line: a name that is not a plain model id never reaches the URL."""
    if not (requested and requested.startswith("gemini")):
        return default
    if not GEMINI_MODEL.fullmatch(requested):
        raise PermanentLLMError(f"not a Gemini model id: {requested[:80]!r}", provider="gemini")
    return requested


def _payload(request: ChatRequest) -> dict[str, Any]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    contents = [
        {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
        for m in request.messages
        if m.role != "system"
    ]
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if config:
        payload["generationConfig"] = config
    return payload


def _body_of(response: Answer) -> dict[str, Any]:
    if response.status != 200:
        retry_after = response.headers.get("retry-after")
        raise error_for_status("gemini", response.status, _error_detail(response), retry_after)
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientLLMError("malformed JSON in the response", provider="gemini") from exc
    if not isinstance(body, dict):
        raise TransientLLMError("unexpected response shape", provider="gemini")
    return body


def _error_detail(response: Answer) -> str:
    """Google's error body: `{"error": {"code", "message", "status"}}`."""
    try:
        error = response.json()["error"]
        return " ".join(filter(None, [error.get("status"), shorten(str(error.get("message", "")))]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return shorten(response.text)


def _completion(body: dict[str, Any], model: str, latency_ms: int) -> Completion:
    try:
        text = _text_of(body)
        meta = body.get("usageMetadata") or {}
        usage = Usage(
            input_tokens=int(meta.get("promptTokenCount") or 0),
            output_tokens=int(meta.get("candidatesTokenCount") or 0),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise TransientLLMError("unexpected response shape", provider="gemini") from exc
    used = str(body.get("modelVersion") or model)
    return Completion(
        content=text, provider="gemini", model=used, usage=usage, latency_ms=latency_ms
    )


def _text_of(body: dict[str, Any]) -> str:
    reason = (body.get("promptFeedback") or {}).get("blockReason")
    if reason:
        raise PermanentLLMError(f"the prompt was blocked by Gemini ({reason})", provider="gemini")
    candidates = body.get("candidates") or []
    candidate = candidates[0] if candidates else {}
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(p.get("text") or "" for p in parts if not p.get("thought"))
    if text:
        return text
    raise _empty_answer(str(candidate.get("finishReason") or "none"))


def _empty_answer(reason: str) -> LLMError:
    if reason in REFUSALS:
        message = f"Gemini withheld the answer (finish reason {reason})"
        return PermanentLLMError(message, provider="gemini")
    if reason == "MAX_TOKENS":
        message = "Gemini produced no text within max_tokens; raise max_tokens"
        return PermanentLLMError(message, provider="gemini")
    return TransientLLMError(f"Gemini returned no text (finish reason {reason})", provider="gemini")
