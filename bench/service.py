"""Starting what a case measures: the service (API, workers, a stub LLM), the baselines, and CPU
accounting over a measured window."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Fleet, Proc, cpu_s, free_port, run_json, wait_until

KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json", **AUTH}
BASE_ENV = {
    "HOST": "127.0.0.1",
    "API_KEYS": f"bench:{KEY}",
    "RATE_LIMIT": "100000000/minute",
    "WEBHOOK_SIGNING_SECRET": "bench-master-secret",
    "LOG_FORMAT": "json",
}


@dataclass
class Api:
    proc: Proc
    port: int
    db: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=120, trust_env=False)


@dataclass
class Run:
    """One bench run: its scratch directory, its processes and its Redis."""

    fleet: Fleet
    scratch: Path
    redis_url: str
    redis_pid: int
    dbs: int = 0
    watched: dict[str, int] = field(default_factory=dict)

    def fresh_db(self) -> str:
        self.dbs += 1
        return str(self.scratch / f"chatjobs-{self.dbs}.db")

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        client.flushall()
        client.close()

    def api(self, name: str, *, redis: bool = False, db: str | None = None, **env: str) -> Api:
        port = free_port()
        db = db or self.fresh_db()
        full = {**BASE_ENV, "PORT": str(port), "SQLITE_PATH": db, **env}
        if redis:
            full["REDIS_URL"] = self.redis_url
        proc = self.fleet.serve(name, ["-m", "api"], port, full, ready_path="/readyz")
        return Api(proc, port, db)

    def worker(self, name: str, api: Api, **env: str) -> Proc:
        full = {**BASE_ENV, "REDIS_URL": self.redis_url, "SQLITE_PATH": api.db, **env}
        proc = self.fleet.start(name, ["-m", "worker"], full)
        wait_until(lambda: "Starting worker for" in proc.log(), timeout=60, interval=0.05)
        return proc

    def stub_llm(self, delay_s: float) -> tuple[Proc, str]:
        """A Gemini stand-in that answers after `delay_s` (bench/llm_stub.py)."""
        port = free_port()
        args = ["-m", "bench.llm_stub", str(port), str(delay_s)]
        proc = self.fleet.serve("llm-stub", args, port)
        return proc, f"http://127.0.0.1:{port}"

    def bare_api(self) -> Api:
        port = free_port()
        proc = self.fleet.serve(
            "bare-api", ["-m", "bench.bare_api", str(port)], port, None, "/docs"
        )
        return Api(proc, port)

    def bare_worker(self, poll_s: float, max_jobs: int) -> Proc:
        args = ["-m", "bench.bare_arq", "worker", self.redis_url, str(poll_s), str(max_jobs)]
        proc = self.fleet.start(f"bare-arq-{poll_s}", args)
        wait_until(lambda: "Starting worker for" in proc.log(), timeout=60, interval=0.05)
        return proc

    def load(self, spec: dict[str, Any]) -> dict[str, Any]:
        return run_json(["-m", "bench.load", _json(spec)])


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


@dataclass
class CpuWindow:
    """CPU seconds each watched process (and the load generators) used in a window."""

    pids: dict[str, int]
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def share(self) -> dict[str, float]:
        """Each process's CPU as a fraction of one core over the window."""
        return {k: round(v / self.seconds, 3) for k, v in self.used.items() if self.seconds}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def cpu_window(**procs: Proc | int) -> Iterator[CpuWindow]:
    pids = {k: (p if isinstance(p, int) else p.popen.pid) for k, p in procs.items()}
    window = CpuWindow(pids)
    window.before = {k: cpu_s(pid) for k, pid in pids.items()}
    load_before, started = _children_cpu(), time.perf_counter()
    yield window
    window.seconds = time.perf_counter() - started
    window.used = {k: cpu_s(pid) - window.before[k] for k, pid in pids.items()}
    window.used["load"] = _children_cpu() - load_before
