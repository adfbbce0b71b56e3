"""Google Gemini through the google-genai SDK."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from shared.adapters.llm.http_errors import error_for_status, shorten
from shared.errors import LLMError, PermanentLLMError, TransientLLMError
from shared.models import ChatRequest, Completion, Usage

# Finish reasons that mean the answer was withheld on purpose; asking again will not help.
REFUSALS = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"})


class GeminiProvider:
    name = "gemini"

    def __init__(self, api_key: str, model: str, base_url: str | None, timeout_s: float) -> None:
        self.api_key, self.model, self.base_url = api_key, model, base_url
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None
        self._client: genai.Client | None = None

    async def start(self) -> None:
        """Create the SDK client once for this process. Our own httpx client keeps the SDK off
        aiohttp (if installed), so failures arrive as httpx errors; one attempt, because
        FallbackLLM and the job retries decide."""
        if self._client is not None:
            return
        self._http = httpx.AsyncClient(follow_redirects=False)
        options = types.HttpOptions(
            base_url=self.base_url,
            timeout=int(self.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            httpx_async_client=self._http,
        )
        self._client = genai.Client(api_key=self.api_key, http_options=options)

    async def complete(self, request: ChatRequest) -> Completion:
        model = _pick_model(request.model, self.model)
        started = time.monotonic()
        response = await self._generate(model, request)
        latency_ms = int((time.monotonic() - started) * 1000)
        return _completion(response, model, latency_ms)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            self._client.close()
        if self._http is not None:
            await self._http.aclose()
        self._http = self._client = None

    async def _generate(self, model: str, request: ChatRequest) -> types.GenerateContentResponse:
        contents, config = _to_gemini(request)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await (await self._sdk()).aio.models.generate_content(
                    model=model, contents=contents, config=config
                )
        except genai_errors.APIError as exc:
            raise _api_error(exc) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            message = f"timed out after {self.timeout_s:g} s"
            raise TransientLLMError(message, provider="gemini") from exc
        except httpx.TransportError as exc:
            raise TransientLLMError(f"{type(exc).__name__}: {exc}", provider="gemini") from exc
        except json.JSONDecodeError as exc:
            raise TransientLLMError("malformed JSON in the response", provider="gemini") from exc

    async def _sdk(self) -> genai.Client:
        if self._client is None:
            await self.start()
        assert self._client is not None
        return self._client


def _pick_model(requested: str | None, default: str) -> str:
    return requested if requested and requested.startswith("gemini") else default


def _to_gemini(request: ChatRequest) -> tuple[list[types.Content], types.GenerateContentConfig]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    contents = [
        types.Content(
            role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)]
        )
        for m in request.messages
        if m.role != "system"
    ]
    config = types.GenerateContentConfig(
        system_instruction=system or None,
        temperature=request.temperature,
        max_output_tokens=request.max_tokens,
    )
    return contents, config


def _completion(response: types.GenerateContentResponse, model: str, latency_ms: int) -> Completion:
    text = _text_of(response)
    meta = response.usage_metadata
    usage = Usage(
        input_tokens=(meta.prompt_token_count or 0) if meta else 0,
        output_tokens=(meta.candidates_token_count or 0) if meta else 0,
    )
    return Completion(
        content=text,
        provider="gemini",
        model=response.model_version or model,
        usage=usage,
        latency_ms=latency_ms,
    )


def _text_of(response: types.GenerateContentResponse) -> str:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = feedback.block_reason.value
        raise PermanentLLMError(f"the prompt was blocked by Gemini ({reason})", provider="gemini")
    candidate = response.candidates[0] if response.candidates else None
    parts = (candidate.content.parts or []) if candidate and candidate.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if text:
        return text
    reason = candidate.finish_reason.value if candidate and candidate.finish_reason else "none"
    raise _empty_answer(reason)


def _empty_answer(reason: str) -> LLMError:
    if reason in REFUSALS:
        message = f"Gemini withheld the answer (finish reason {reason})"
        return PermanentLLMError(message, provider="gemini")
    if reason == "MAX_TOKENS":
        message = "Gemini produced no text within max_tokens; raise max_tokens"
        return PermanentLLMError(message, provider="gemini")
    return TransientLLMError(f"Gemini returned no text (finish reason {reason})", provider="gemini")


def _api_error(exc: genai_errors.APIError) -> LLMError:
    detail = " ".join(filter(None, [exc.status, shorten(str(exc.message or ""))]))
    if not isinstance(exc.code, int):
        return TransientLLMError(f"unexpected API error: {detail}", provider="gemini")
    headers = getattr(exc.response, "headers", None)
    retry_after = headers.get("retry-after") if headers is not None else None
    return error_for_status("gemini", exc.code, detail, retry_after)
