"""A lean Gemini stand-in for the bench: answers every `generateContent` after DELAY seconds.

tests/stubs/llm_server.py (Starlette) records and switches behaviour for the tests, at about half
a millisecond of CPU a request; on a two-core machine that competes with the worker being
measured. This one only sleeps and answers (asyncio + httptools).

`python -m bench.llm_stub PORT DELAY_S`
"""

from __future__ import annotations

import asyncio
import json
import sys

import httptools
import uvloop

ANSWER = json.dumps(
    {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "stub says hi"}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 3, "totalTokenCount": 6},
        "modelVersion": "gemini-2.5-flash",
    }
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(ANSWER)}\r\n\r\n".encode()
    + ANSWER
)


class StubProtocol(asyncio.Protocol):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        asyncio.get_running_loop().call_later(self.delay_s, self._answer)

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)


async def serve(port: int, delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(delay_s), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), float(sys.argv[2])))
