"""CPU a Gemini call costs the calling process, run as its own process:
`python -m bench.llm_calls URL CLIENT CALLS IN_FLIGHT` prints JSON.

CLIENT `sdk` is the worker's own GeminiProvider (google-genai); `rest` is the baseline kept here:
the same `generateContent` exchange written by hand over one aiohttp session, as the provider
was before it went back to the SDK. Both run on uvloop, as the worker does, against the same
stub (bench/llm_stub.py); a warm-up precedes the measured calls. `start_cpu_s` is what making
the client cost once (for the SDK: importing it and building its client).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import uvloop

from shared.models import ChatRequest, Message

MODEL = "gemini-2.5-flash"
REQUEST = ChatRequest(messages=[Message(role="user", content="say hi")], max_tokens=50)
Call = Callable[[], Awaitable[str]]


async def rest_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        headers={"x-goog-api-key": "bench"}, connector=aiohttp.TCPConnector(limit=64)
    )
    endpoint = f"{url}/v1beta/models/{MODEL}:generateContent"

    async def call() -> str:
        payload: dict[str, Any] = {
            "contents": [
                {"role": "user", "parts": [{"text": m.content}]} for m in REQUEST.messages
            ],
            "generationConfig": {"maxOutputTokens": REQUEST.max_tokens},
        }
        async with session.post(endpoint, json=payload, allow_redirects=False) as response:
            body = json.loads(await response.read())
        parts = body["candidates"][0]["content"]["parts"]
        return "".join(p.get("text") or "" for p in parts if not p.get("thought"))

    return call, session.close


async def sdk_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    from shared.adapters.llm.gemini import GeminiConnection, GeminiProvider

    connection = GeminiConnection(api_key="bench", base_url=url)
    provider = GeminiProvider(connection, MODEL, 30.0, connections=64)
    await provider.start()

    async def call() -> str:
        return (await provider.complete(REQUEST)).content

    return call, provider.close


CLIENTS = {"rest": rest_client, "sdk": sdk_client}


async def measure(url: str, client: str, calls: int, in_flight: int) -> dict[str, Any]:
    started = time.process_time()
    call, close = await CLIENTS[client](url)
    start_cpu_s = time.process_time() - started
    try:
        await _drive(call, max(calls // 10, in_flight), in_flight)  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        await _drive(call, calls, in_flight)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await close()
    return {
        "client": client,
        "calls": calls,
        "in_flight": in_flight,
        "cpu_ms_per_call": round(1000 * cpu / calls, 3),
        "start_cpu_s": round(start_cpu_s, 2),
        "calls_per_s": round(calls / wall),
    }


async def _drive(call: Call, calls: int, in_flight: int) -> None:
    left = iter(range(calls))

    async def lane() -> None:
        for _ in left:
            if not await call():
                raise RuntimeError("an empty answer")

    await asyncio.gather(*(lane() for _ in range(in_flight)))


if __name__ == "__main__":
    url, client, calls, in_flight = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(uvloop.run(measure(url, client, calls, in_flight))))
