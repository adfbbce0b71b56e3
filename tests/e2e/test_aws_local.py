"""`make aws-local`'s program (`python -m shared.adapters.aws.local`) as a process: it keeps
every accepted job through kill -9 of its worker and of its API, and SIGTERM stops it and its
children within seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher
from tests.e2e.services import KEYS, service_env
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e


def children(api: Api) -> dict[str, int]:
    """The launcher's child processes by program (`api`, `worker`), read from /proc."""
    found: dict[str, int] = {}
    for pid in child_pids(api.proc.popen.pid):
        with contextlib.suppress(OSError):  # that child has exited
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-m" in args:
                found[args[args.index(b"-m") + 1].decode()] = pid
    return found


def child_pids(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(child) for task in tasks for child in (task / "children").read_text().split()]
    except OSError:  # it has exited
        return []


def restarted(api: Api, name: str, old_pid: int) -> int:
    def new_pid() -> int | None:
        pid = children(api).get(name)
        return pid if pid not in (None, old_pid) else None

    assert procs.wait_for(new_pid, timeout=10), api.proc.log()
    pid = new_pid()
    assert pid is not None
    return pid


def ready(api: Api) -> bool:
    try:
        return httpx.get(f"{api.url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_aws_local_keeps_accepted_jobs_through_kill_9_and_stops_on_sigterm(
    launcher: Launcher, llm_stub: LLMStub
) -> None:
    # LLM_TIMEOUT_S=1: a killed worker's messages come back after 2 x (7 + 2) + 10 = 28 s.
    api = launcher.aws_local(**service_env(llm_stub, LLM_TIMEOUT_S="1"))
    api.http.headers["Authorization"] = f"Bearer {KEYS['t1']}"
    llm_stub.set("gemini", "stall", seconds=0.8)  # jobs are running when the worker dies
    accepted = [api.submit(f"before {n}")["id"] for n in range(20)]
    assert procs.wait_for(lambda: llm_stub.stats()["gemini"] >= 4, timeout=20)

    worker = children(api)["worker"]
    os.kill(worker, signal.SIGKILL)
    restarted(api, "worker", worker)
    accepted += [api.submit(f"after worker {n}")["id"] for n in range(5)]

    api_pid = children(api)["api"]
    os.kill(api_pid, signal.SIGKILL)
    restarted(api, "api", api_pid)
    assert procs.wait_for(lambda: ready(api), timeout=90), api.proc.log()
    accepted += [api.submit(f"after api {n}")["id"] for n in range(5)]

    llm_stub.set("gemini", "ok")
    done = api.wait_terminal(accepted, timeout=90)
    assert {job["status"] for job in done.values()} == {"succeeded"}, done

    running = list(children(api).values())
    assert len(running) == 2
    stopping = time.monotonic()
    api.proc.popen.send_signal(signal.SIGTERM)
    assert api.proc.popen.wait(15) == 0
    assert time.monotonic() - stopping < 10
    assert all(gone(pid) for pid in running), api.proc.log()
