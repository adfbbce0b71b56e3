"""Worker heartbeats: each process that runs jobs says every WORKER_HEARTBEAT_S that it is alive,
what it runs and how its LLM providers fare; the console's overview reads them (`WorkerRegistry`,
shared/ports.py: in this process when embedded, Redis with arq, the store on AWS)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from shared.models import utcnow

if TYPE_CHECKING:
    from shared.ports import WorkerRegistry

log = logging.getLogger(__name__)

BEAT_KEPT_S = 3600  # a registry forgets a worker this long after its last beat
MISSED_BEATS = 3  # a worker this many beats late is shown as gone
WorkerKind = Literal["embedded", "arq", "sqs-poller", "lambda"]


class ProviderHealth(BaseModel):
    """One LLM provider as one worker sees it."""

    name: str = Field(description="The provider (`gemini`, `openrouter`, `offline`).")
    circuit: Literal["closed", "open", "half_open", "none"] = Field(
        description="Its circuit breaker: `open` skips it until a probe is due; `none`: no breaker."
    )
    consecutive_failures: int = Field(0, description="Transient failures in a row.")
    recent_errors: int = Field(0, description="Transient failures within the last 5 minutes.")
    last_error: str | None = Field(None, description="The last failure's message.")
    last_error_at: datetime | None = Field(None, description="When it failed last.")
    calls: int = Field(0, description="Calls made since the worker started.")
    fallbacks: int = Field(0, description="Answers that came from the fallback after this failed.")


class WorkerBeat(BaseModel):
    """A worker's latest heartbeat."""

    id: str = Field(description="The worker: host, process id and a random part.")
    kind: WorkerKind = Field(description="What runs the jobs there.")
    host: str = Field(description="The machine (container, Lambda sandbox).")
    pid: int = Field(description="The process id.")
    started_at: datetime = Field(description="When the worker started.")
    last_beat: datetime = Field(description="When it last said it was alive.")
    interval_s: float = Field(description="Its heartbeat interval (WORKER_HEARTBEAT_S).")
    providers: list[ProviderHealth] = Field(
        default_factory=list, description="Its LLM providers' health."
    )

    def alive_at(self, now: datetime) -> bool:
        return now - self.last_beat <= timedelta(seconds=self.interval_s * MISSED_BEATS)


HealthOf = Callable[[], list[ProviderHealth]]


class Heartbeat:
    """This process's beats: `beat()` once (a Lambda invocation), or `run_forever` (a loop)."""

    def __init__(
        self, registry: WorkerRegistry, kind: WorkerKind, interval_s: float, health: HealthOf
    ) -> None:
        self.registry, self.interval_s, self.health = registry, interval_s, health
        host = socket.gethostname()
        self.started = WorkerBeat(
            id=f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}",
            kind=kind,
            host=host,
            pid=os.getpid(),
            started_at=utcnow(),
            last_beat=utcnow(),
            interval_s=interval_s,
        )
        self.last_sent: datetime | None = None

    async def beat(self) -> None:
        now = utcnow()
        beat = self.started.model_copy(update={"last_beat": now, "providers": self.health()})
        await self.registry.beat(beat)
        self.last_sent = now

    async def beat_if_due(self) -> None:
        """A beat unless one went out less than an interval ago (Lambda: once per invocation at
        most, as its sandbox runs no loop of its own)."""
        due = self.last_sent is None or utcnow() - self.last_sent >= timedelta(
            seconds=self.interval_s
        )
        if not due:
            return
        try:
            await self.beat()
        except Exception:  # a heartbeat must never fail the work it rides along
            log.exception("heartbeat failed")

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.beat()
            except Exception:
                log.exception("heartbeat failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
