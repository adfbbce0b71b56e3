"""04: the two local layouts: embedded (one process, no setup) and Docker Compose (API + arq
workers on Redis)."""

from __future__ import annotations

from pathlib import Path

from diagram_parts import Component as C
from diagram_parts import canvas, edge, group, node

FILENAME = "04_local_development"
TITLE = "chatjobs: local development layouts"

PY = "diagrams.programming.language.Python"
DEVELOPER = C(
    "chatjobs CLI\ncurl, browser /docs", "code", "chatjobs_cli", "diagrams.onprem.client.User"
)
# embedded: make run (python -m api), http://127.0.0.1:8000
APP = C(
    "create_app\nuvicorn, python -m api",
    "code",
    "api.app:create_app",
    "diagrams.programming.framework.Fastapi",
)
INPROCESS = C(
    "InProcessJobQueue\nWORKER_CONCURRENCY tasks",
    "code",
    "shared.adapters.queue.inprocess:InProcessJobQueue",
    PY,
)
MEMORY = C(
    "MemoryResultCache\nTTL + LRU", "code", "shared.adapters.cache.memory:MemoryResultCache", PY
)
LIMIT = C("TenantRateLimiter\nin memory", "code", "api.ratelimit:TenantRateLimiter", PY)
SQLITE = C(
    "SQLITE_PATH\ndata/chatjobs.db (WAL)", "env", "SQLITE_PATH", "diagrams.generic.database.SQL"
)
OFFLINE = C(
    "OfflineProvider\nno key: canned answers",
    "code",
    "shared.adapters.llm.offline:OfflineProvider",
    PY,
)
# docker compose up --scale worker=4
API = C("api\npython -m api, :8000", "compose", "api", "diagrams.onprem.container.Docker")
WORKER = C(
    "worker\nN replicas of python -m worker",
    "compose",
    "worker",
    "diagrams.onprem.container.Docker",
)
REDIS = C("redis\nqueue, cache, rate limit", "compose", "redis", "diagrams.onprem.inmemory.Redis")
VOLUME = C(
    "SQLITE_PATH\n/data/chatjobs.db, volume",
    "env",
    "SQLITE_PATH",
    "diagrams.generic.storage.Storage",
)
LLM = C(
    "GEMINI_API_KEY\nGemini, then OpenRouter", "env", "GEMINI_API_KEY", "diagrams.gcp.ml.AIPlatform"
)

COMPONENTS = [
    DEVELOPER,
    APP,
    INPROCESS,
    MEMORY,
    LIMIT,
    SQLITE,
    OFFLINE,
    API,
    WORKER,
    REDIS,
    VOLUME,
    LLM,
]


def draw(out_dir: Path, render: bool = True) -> None:
    with canvas(TITLE, out_dir / FILENAME, render=render, splines="spline", ranksep="1.2"):
        developer = node(DEVELOPER)
        with group("embedded: make run, one process, no setup", "#EEF5EC"):
            app = node(APP)
            inprocess, memory, limit = node(INPROCESS), node(MEMORY), node(LIMIT)
            sqlite, offline = node(SQLITE), node(OFFLINE)
        with group("docker compose up --scale worker=4 (REDIS_URL set)", "#EEF3FB"):
            api, worker, redis, volume = node(API), node(WORKER), node(REDIS), node(VOLUME)
        llm = node(LLM)

        developer >> edge("127.0.0.1:8000") >> app
        app >> edge() >> [inprocess, memory, limit]
        [app, inprocess] >> edge() >> sqlite
        inprocess >> edge() >> offline
        inprocess >> edge("with a key", style="dashed") >> llm
        developer >> edge("127.0.0.1:8000") >> api
        api >> edge("enqueue, cache, limits") >> redis
        redis >> edge("arq jobs") >> worker
        [api, worker] >> edge("one host") >> volume
        worker >> edge() >> llm
