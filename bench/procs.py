"""The processes of one bench run: started in a scratch directory, measured (CPU, memory) from
/proc, and all stopped at the end, whatever happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e import procs
from tests.e2e.procs import Proc, free_port

__all__ = ["Fleet", "Proc", "cpu_s", "free_port", "rss_kib"]

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> bool:
    """Start VmHWM (peak RSS) afresh from the current RSS (Linux 4.0+)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Fleet:
    """Starts processes for the bench and stops every one of them in `close()`."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.logs = scratch / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.running: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = procs.start(name, args, procs.child_env(**(env or {})), self.logs, self.scratch)
        self.running.append(proc)
        return proc

    def serve(
        self,
        name: str,
        args: list[str],
        port: int,
        env: dict[str, str] | None = None,
        ready_path: str = "/",
    ) -> Proc:
        proc = self.start(name, args, env)
        procs.wait_ready(proc, f"http://127.0.0.1:{port}{ready_path}", timeout=60)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop(timeout=20)
        if proc in self.running:
            self.running.remove(proc)

    def close(self) -> None:
        for proc in list(self.running):
            proc.kill(signal.SIGTERM)
        for proc in list(self.running):
            self.stop(proc)


def run_json(args: list[str], timeout: float = 600) -> dict[str, Any]:
    """Run `python <args>` (a load generator) to the end and parse the JSON it prints."""
    import json

    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        timeout=timeout,
        env=procs.child_env(),
        cwd=procs.ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def wait_until(check: Any, timeout: float, interval: float = 0.02) -> float:
    """Poll `check()` until truthy; the seconds it took. Raises TimeoutError."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"not done after {timeout} s")
        time.sleep(interval)
    return time.perf_counter() - started


def get_json(url: str, **kwargs: Any) -> Any:
    return httpx.get(url, timeout=30, trust_env=False, **kwargs).json()
