"""MemoryWorkerRegistry: heartbeats in this process (embedded mode: the API runs the workers)."""

from __future__ import annotations

from datetime import timedelta

from shared.heartbeats import BEAT_KEPT_S, WorkerBeat
from shared.models import utcnow


class MemoryWorkerRegistry:
    def __init__(self) -> None:
        self._beats: dict[str, WorkerBeat] = {}

    async def beat(self, beat: WorkerBeat) -> None:
        self._beats[beat.id] = beat

    async def beats(self) -> list[WorkerBeat]:
        since = utcnow() - timedelta(seconds=BEAT_KEPT_S)
        for old in [b.id for b in self._beats.values() if b.last_beat < since]:
            del self._beats[old]
        return sorted(self._beats.values(), key=lambda b: b.last_beat, reverse=True)

    async def close(self) -> None:
        return None
