"""A stub LLM server speaking Gemini's generateContent and OpenRouter's chat completions, whole
or streamed as server-sent events (`:streamGenerateContent?alt=sse`, `"stream": true`), a word
a chunk with `chunk_delay_s` between chunks.

Answers are deterministic ("gemini says: <last user message>", as `{"answer": ...}` JSON when
the request asks for JSON output), behaviour is switchable per provider at runtime (in-process
through `StubState`, or over HTTP with `POST /_control`), and it counts and records requests
(`GET /_stats`, `GET /_requests/{provider}`); each record carries the generation parameters it
was sent, in one shape for both providers (`options`: temperature, max_tokens, top_p, stop,
seed, json, schema), and when it arrived (`at`; `StubState.arrivals`: calls per second).

Run it as a process: `python -m tests.stubs.llm_server --port 8099`, then point `GEMINI_BASE_URL`
at `http://127.0.0.1:8099` and `OPENROUTER_BASE_URL` at `http://127.0.0.1:8099/api/v1`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

PROVIDERS = ("gemini", "openrouter")
MODES = ("ok", "fail", "stall", "rate_limit", "block", "safety", "garbage", "cut")
GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}  # fmt: skip


@dataclass(frozen=True)
class Behaviour:
    """How a provider answers. `times`: only the next N requests, then back to ok.
    `chunk_delay_s`: the pause between a streamed answer's chunks."""

    mode: str = "ok"
    status: int = 500
    seconds: float = 5.0
    retry_after: int = 1
    times: int | None = None
    chunk_delay_s: float = 0.0


class StubState:
    """Per-provider behaviour, request counts and the last request seen. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.behaviours = {p: Behaviour() for p in PROVIDERS}
            self.counts = dict.fromkeys(PROVIDERS, 0)
            self.requests: dict[str, list[dict[str, Any]]] = {p: [] for p in PROVIDERS}
            self.targets: list[str] = []  # every request's path and query, routed or not

    def saw(self, target: str) -> None:
        with self._lock:
            self.targets.append(target)

    def seen_targets(self) -> list[str]:
        with self._lock:
            return list(self.targets)

    def set(self, provider: str, mode: str = "ok", **options: Any) -> None:
        if provider not in PROVIDERS or mode not in MODES:
            raise ValueError(f"unknown provider {provider!r} or mode {mode!r}")
        with self._lock:
            self.behaviours[provider] = Behaviour(mode=mode, **options)

    def take(self, provider: str, record: dict[str, Any]) -> Behaviour:
        """Count and record a request; return the behaviour that applies to it."""
        with self._lock:
            self.counts[provider] += 1
            self.requests[provider].append(record)
            current = self.behaviours[provider]
            if current.times is not None:
                left = current.times - 1
                self.behaviours[provider] = replace(current, times=left) if left else Behaviour()
            return current

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def last_request(self, provider: str) -> dict[str, Any] | None:
        with self._lock:
            seen = self.requests[provider]
            return seen[-1] if seen else None

    def arrivals(self, provider: str) -> list[tuple[float, str]]:
        """When each request to `provider` arrived (epoch s, in order) and the API key it sent."""
        with self._lock:
            seen = list(self.requests[provider])
        return [(r["at"], _api_key(r["headers"])) for r in seen]

    def calls_by_prompt(self) -> Counter[str]:
        """How many requests (to either provider) each last user message was sent in."""
        with self._lock:
            seen = [record for records in self.requests.values() for record in records]
        return Counter(_request_prompt(record["body"]) for record in seen)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {p: asdict(b) for p, b in self.behaviours.items()}


def create_app(state: StubState | None = None) -> Starlette:
    stub = state or StubState()
    app = Starlette(routes=_routes(), middleware=[Middleware(_TargetLog, stub=stub)])
    app.state.stub = stub
    return app


class _TargetLog:
    """Records the raw path and query of every HTTP request, including ones no route takes."""

    def __init__(self, app: ASGIApp, stub: StubState) -> None:
        self.app, self.stub = app, stub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            self.stub.saw(
                scope.get("raw_path", b"").decode("latin-1") + ("?" + query if query else "")
            )
        await self.app(scope, receive, send)


def _routes() -> list[Route]:
    return [
        Route("/{version}/models/{target}", _gemini, methods=["POST"]),
        Route("/chat/completions", _openrouter, methods=["POST"]),
        Route("/api/v1/chat/completions", _openrouter, methods=["POST"]),
        Route("/_control", _control, methods=["GET", "POST"]),
        Route("/_reset", _reset, methods=["POST"]),
        Route("/_stats", _stats, methods=["GET"]),
        Route("/_requests/{provider}", _last_request, methods=["GET"]),
    ]


async def _record(request: Request, provider: str) -> dict[str, Any]:
    headers = {k: v for k, v in request.headers.items() if k in ("authorization", "x-goog-api-key")}
    body = await request.json()
    options = _gemini_options(body) if provider == "gemini" else _openrouter_options(body)
    record = {"path": request.url.path, "headers": headers, "body": body, "options": options}
    return record | {"at": time.time()}  # when it arrived (epoch s): calls per second, per minute


def _gemini_options(body: dict[str, Any]) -> dict[str, Any]:
    """Gemini's generationConfig, as the SDK sends it (camelCase)."""
    config = body.get("generationConfig") or {}
    return {
        "temperature": config.get("temperature"),
        "max_tokens": config.get("maxOutputTokens"),
        "top_p": config.get("topP"),
        "stop": config.get("stopSequences"),
        "seed": config.get("seed"),
        "json": config.get("responseMimeType") == "application/json",
        "schema": config.get("responseJsonSchema"),
    }


def _openrouter_options(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI-style body fields."""
    answer = body.get("response_format") or {}
    stop = body.get("stop")
    return {
        "temperature": body.get("temperature"),
        "max_tokens": body.get("max_tokens"),
        "top_p": body.get("top_p"),
        "stop": [stop] if isinstance(stop, str) else stop,
        "seed": body.get("seed"),
        "json": answer.get("type") in ("json_object", "json_schema"),
        "schema": (answer.get("json_schema") or {}).get("schema"),
    }


def _shaped(text: str, options: dict[str, Any]) -> str:
    """The answer as a JSON object when the request asked for JSON output."""
    return json.dumps({"answer": text}) if options["json"] else text


async def _gemini(request: Request) -> Response:
    model, _, action = request.path_params["target"].partition(":")
    if action not in ("generateContent", "streamGenerateContent"):
        return JSONResponse({"error": {"code": 404, "message": "no such method"}}, 404)
    record = await _record(request, "gemini")
    behaviour = request.app.state.stub.take("gemini", record)
    if behaviour.mode == "stall":
        await asyncio.sleep(behaviour.seconds)
    if behaviour.mode in ("fail", "rate_limit"):
        status = 429 if behaviour.mode == "rate_limit" else behaviour.status
        message = f"stub {behaviour.mode}"
        error = {"code": status, "message": message, "status": GOOGLE_STATUS.get(status)}
        return JSONResponse({"error": error}, status, headers=_retry_after(behaviour))
    if action == "streamGenerateContent":
        chunks = _gemini_chunks(behaviour, record["body"], model)
        return _sse([f"data: {c}" for c in chunks], behaviour.chunk_delay_s)
    if behaviour.mode in ("garbage", "cut"):
        return PlainTextResponse("{not json", 200, media_type="application/json")
    return JSONResponse(_gemini_answer(behaviour.mode, record["body"], model, whole=True))


def _gemini_answer(
    mode: str, body: dict[str, Any], model: str, *, whole: bool, text: str | None = None
) -> dict[str, Any]:
    """The answer, or with `text` one streamed chunk of it (the last one when `whole`)."""
    if mode == "block":
        return {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model}
    if mode == "safety":
        return {"candidates": [{"finishReason": "SAFETY", "index": 0}], "modelVersion": model}
    answer = _gemini_text(body)
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text or answer}]}}
    if not whole:
        return {"candidates": [candidate], "modelVersion": model}
    candidate["finishReason"] = "STOP"
    words_in, words_out = len(str(body.get("contents")).split()), len(answer.split())
    usage = {
        "promptTokenCount": words_in,
        "candidatesTokenCount": words_out,
        "totalTokenCount": words_in + words_out,
    }
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}


def _gemini_text(body: dict[str, Any]) -> str:
    text = f"gemini says: {_last_text(body.get('contents', []), 'user', _parts_text)}"
    return _shaped(text, _gemini_options(body))


def _gemini_chunks(behaviour: Behaviour, body: dict[str, Any], model: str) -> list[str]:
    if behaviour.mode == "garbage":
        return ["{not json"]
    if behaviour.mode in ("block", "safety"):
        return [json.dumps(_gemini_answer(behaviour.mode, body, model, whole=True))]
    words = _words(_gemini_text(body))
    chunks = [
        json.dumps(_gemini_answer("ok", body, model, whole=n == len(words) - 1, text=word))
        for n, word in enumerate(words)
    ]
    return _cut(chunks) if behaviour.mode == "cut" else chunks


def _cut(chunks: list[str]) -> list[str]:
    """Mode `cut`: the first half of a stream, then a chunk that is not JSON (a stream that
    breaks off midway)."""
    return [*chunks[: len(chunks) // 2], "{not json"]


def _words(text: str) -> list[str]:
    """A chunk a word, each with the space after it: joined they are the text again."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def _sse(lines: list[str], delay_s: float) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        for n, line in enumerate(lines):
            if n and delay_s:
                await asyncio.sleep(delay_s)
            yield line + "\r\n\r\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _openrouter(request: Request) -> Response:
    record = await _record(request, "openrouter")
    behaviour = request.app.state.stub.take("openrouter", record)
    if behaviour.mode == "stall":
        await asyncio.sleep(behaviour.seconds)
    if record["body"].get("stream") and behaviour.mode not in ("fail", "rate_limit"):
        lines = [": OPENROUTER PROCESSING"]  # a comment, as OpenRouter sends while it waits
        lines += [f"data: {c}" for c in _openrouter_chunks(behaviour, record["body"])]
        return _sse([*lines, "data: [DONE]"], behaviour.chunk_delay_s)
    return _openrouter_response(behaviour, record["body"])


def _openrouter_response(behaviour: Behaviour, body: dict[str, Any]) -> Response:
    mode = behaviour.mode
    if mode in ("fail", "rate_limit"):
        status = 429 if mode == "rate_limit" else behaviour.status
        error = {"code": status, "message": f"stub {mode}"}
        return JSONResponse({"error": error}, status, headers=_retry_after(behaviour))
    if mode in ("garbage", "cut"):
        return PlainTextResponse("{not json", 200, media_type="application/json")
    answer = _openrouter_text(body)
    refused = mode in ("block", "safety")
    message = {"role": "assistant", "content": None if refused else answer}
    finish = "content_filter" if refused else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    model = body.get("model", "stub/model")
    usage = _openrouter_usage(body, answer)
    return JSONResponse({"id": "gen-stub", "model": model, "choices": [choice], "usage": usage})


def _openrouter_text(body: dict[str, Any]) -> str:
    prompt = _last_text(body.get("messages", []), "user", lambda m: str(m.get("content", "")))
    return _shaped(f"openrouter says: {prompt}", _openrouter_options(body))


def _openrouter_usage(body: dict[str, Any], answer: str) -> dict[str, int]:
    words_in, words_out = len(str(body.get("messages")).split()), len(answer.split())
    return {"prompt_tokens": words_in, "completion_tokens": words_out}


def _openrouter_chunks(behaviour: Behaviour, body: dict[str, Any]) -> list[str]:
    """`chat.completion.chunk`s: a word each, then the finish reason, then the usage."""
    if behaviour.mode == "garbage":
        return ["{not json"]
    model, answer = body.get("model", "stub/model"), _openrouter_text(body)
    refused = behaviour.mode in ("block", "safety")

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return json.dumps({"id": "gen-stub", "model": model, "choices": [choice]})

    words = [] if refused else _words(answer)
    usage = {
        "id": "gen-stub",
        "model": model,
        "choices": [],
        "usage": _openrouter_usage(body, answer),
    }
    chunks = [
        *(chunk({"role": "assistant", "content": word}, None) for word in words),
        chunk({}, "content_filter" if refused else "stop"),
        json.dumps(usage),
    ]
    return _cut(chunks[: len(words)]) if behaviour.mode == "cut" else chunks


def _request_prompt(body: dict[str, Any]) -> str:
    if "contents" in body:
        return _last_text(body["contents"], "user", _parts_text)
    return _last_text(body.get("messages", []), "user", lambda m: str(m.get("content", "")))


def _api_key(headers: dict[str, str]) -> str:
    key = headers.get("x-goog-api-key") or headers.get("authorization", "")
    return key.removeprefix("Bearer ")


def _retry_after(behaviour: Behaviour) -> dict[str, str]:
    return {"Retry-After": str(behaviour.retry_after)} if behaviour.mode == "rate_limit" else {}


def _parts_text(content: dict[str, Any]) -> str:
    return "".join(str(p.get("text", "")) for p in content.get("parts", []))


def _last_text(
    items: list[dict[str, Any]], role: str, text_of: Callable[[dict[str, Any]], str]
) -> str:
    return next((str(text_of(i)) for i in reversed(items) if i.get("role") == role), "")


async def _control(request: Request) -> Response:
    """GET: current behaviours. POST `{"gemini": {"mode": "fail", "status": 500}, ...}`."""
    stub: StubState = request.app.state.stub
    if request.method == "POST":
        try:
            for provider, options in (await request.json()).items():
                stub.set(provider, **options)
        except (TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, 422)
    return JSONResponse(stub.snapshot())


async def _reset(request: Request) -> Response:
    request.app.state.stub.reset()
    return JSONResponse({"reset": True})


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.stub.stats())


async def _last_request(request: Request) -> Response:
    provider = request.path_params["provider"]
    if provider not in PROVIDERS:
        return JSONResponse({"error": f"unknown provider {provider!r}"}, 404)
    return JSONResponse(request.app.state.stub.last_request(provider))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Stub Gemini/OpenRouter server for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
