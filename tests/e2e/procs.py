"""Start the service's own processes (API, workers, stub servers) for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]

# Variables a developer's shell might carry that would change what the processes do.
_SCRUBBED = (
    "API_KEYS",
    "REDIS_URL",
    "QUEUE_BACKEND",
    "CACHE_BACKEND",
    "STORE_BACKEND",
    "SQLITE_PATH",
    "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
    "GEMINI_BASE_URL",
    "OPENROUTER_BASE_URL",
    "AWS_LAMBDA_FUNCTION_NAME",
    "WEBHOOK_SIGNING_SECRET",
    # ...and every other setting (PORT, RATE_LIMIT, LLM_TIMEOUT_S, ...): pydantic-settings reads
    # names case-insensitively, so the check below is too.
    *(name.upper() for name in Settings.model_fields),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SCRUBBED}
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def start(
    name: str,
    args: list[str],
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path | None = None,
) -> Proc:
    """Start `python <args>`, output to `log_dir/<name>.log`; `Launcher` (conftest.py) waits for
    readiness. `cwd` defaults to the repository; pass a scratch directory to keep the processes
    away from a developer's `.env` there."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as out:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd or ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Proc(name, popen, log_path)


def wait_ready(proc: Proc, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log()}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready after {timeout}s:\n{proc.log()}")


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate()` until it is truthy or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def children(pid: int) -> dict[str, int]:
    """The child processes of `pid` by program (`api`, `worker`: what follows `-m`), from /proc."""
    found: dict[str, int] = {}
    for child in child_pids(pid):
        with contextlib.suppress(OSError):  # that child has exited
            args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"-m" in args:
                found[args[args.index(b"-m") + 1].decode()] = child
    return found


def child_pids(pid: int) -> list[int]:
    """Children of every thread of `pid`. moto's server in the aws-local launcher starts a thread
    per request, so a thread listed may be gone when its file is read: skip that one only."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # it has exited
        return []
    pids: list[int] = []
    for task in tasks:
        with contextlib.suppress(OSError):
            pids += [int(child) for child in (task / "children").read_text().split()]
    return pids


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
