"""What the network LLM providers share: one client per process (made by `start()`, closed by
`close()`), the call's time limit and latency, the empty-answer rule, and a vendor's failures
turned into the two typed errors. A vendor module supplies its client, the call, the stream and
how its own errors and finish reasons read."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import aiohttp

from shared.errors import LLMError, TransientLLMError
from shared.job_stream import Delta
from shared.models import ChatRequest, Completion, Usage

Client = TypeVar("Client")


@dataclass(frozen=True, slots=True)
class Piece:
    """What a vendor read from an answer, or from one streamed chunk of it."""

    text: str
    model: str | None = None
    usage: Usage | None = None
    finish: str | None = None


class HttpProvider(ABC, Generic[Client]):
    """One attempt per call: FallbackLLM and the job's retries decide what follows a failure."""

    name: str

    def __init__(self, model: str, timeout_s: float) -> None:
        self.model, self.timeout_s = model, timeout_s
        self._client: Client | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = self._open()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._shut(client)

    async def complete(self, request: ChatRequest) -> Completion:
        model = self._model_for(request)
        client = await self._ready()
        started = time.monotonic()
        with self._typed_errors():
            async with asyncio.timeout(self.timeout_s):
                piece = await self._complete(client, request, model)
        return self._completion(piece, model, started)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Delta, None]:
        """The answer as it is written; LLM_TIMEOUT_S bounds the whole stream, as a call."""
        model = self._model_for(request)
        client = await self._ready()
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        text: list[str] = []
        last = Piece("")
        async with aclosing(self._stream(client, request, model)) as pieces:
            while (piece := await self._next(pieces, deadline)) is not None:
                last = _said_so_far(last, piece)
                if piece.text:
                    text.append(piece.text)
                    yield Delta(piece.text, self.name)
        whole = Piece("".join(text), last.model, last.usage, last.finish)
        yield Delta("", self.name, self._completion(whole, model, started))

    async def _ready(self) -> Client:
        if self._client is None:
            await self.start()
        assert self._client is not None
        return self._client

    async def _next(self, pieces: AsyncIterator[Piece], deadline: float) -> Piece | None:
        with self._typed_errors():
            async with asyncio.timeout_at(deadline):
                return await anext(pieces, None)

    def _completion(self, piece: Piece, model: str, started: float) -> Completion:
        if not piece.text:
            raise self._empty_answer(piece.finish or "none")
        return Completion(
            content=piece.text,
            provider=self.name,
            model=piece.model or model,
            usage=piece.usage or Usage(),
            latency_ms=int((time.monotonic() - started) * 1000),
        )

    @contextmanager
    def _typed_errors(self) -> Iterator[None]:
        try:
            yield
        except LLMError:
            raise
        except TimeoutError as exc:
            message = f"timed out after {self.timeout_s:g} s"
            raise TransientLLMError(message, provider=self.name) from exc
        except aiohttp.ClientError as exc:
            message = f"{type(exc).__name__}: {exc}"
            raise TransientLLMError(message, provider=self.name) from exc
        except Exception as exc:
            typed = self._error_of(exc)
            if typed is None:
                raise
            raise typed from exc

    def _error_of(self, exc: Exception) -> LLMError | None:
        """A vendor's own exception as a typed error, None to let it through. Here: a malformed
        answer (bad JSON, or a body the vendor's models reject) is transient."""
        if isinstance(exc, ValueError):
            message = f"malformed response: {type(exc).__name__}"
            return TransientLLMError(message, provider=self.name)
        return None

    @abstractmethod
    def _open(self) -> Client: ...

    @abstractmethod
    async def _shut(self, client: Client) -> None: ...

    @abstractmethod
    def _model_for(self, request: ChatRequest) -> str:
        """The model to ask; raises PermanentLLMError for one this vendor must not be sent."""

    @abstractmethod
    async def _complete(self, client: Client, request: ChatRequest, model: str) -> Piece: ...

    @abstractmethod
    def _stream(
        self, client: Client, request: ChatRequest, model: str
    ) -> AsyncGenerator[Piece, None]:
        """The answer's pieces as they arrive."""

    @abstractmethod
    def _empty_answer(self, finish: str) -> LLMError:
        """No text came back: refusal and length are permanent, anything else transient."""


def _said_so_far(last: Piece, piece: Piece) -> Piece:
    """What a stream has told of its model, usage and finish reason by this piece."""
    model, usage = piece.model or last.model, piece.usage or last.usage
    return Piece("", model, usage, piece.finish or last.finish)
