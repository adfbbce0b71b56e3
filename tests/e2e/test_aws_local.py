"""`make aws-local`'s program (`python -m shared.adapters.aws.local`) as a process, shared by
the module's tests (the last one stops it): a big batch through the `chatjobs` CLI completes with
exact counts and bounded memory; every accepted job survives kill -9 of its worker and of its API;
SIGTERM stops it and its children within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher
from tests.e2e.services import KEYS, service_env
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e

BIG_BATCH = 500  # lines: about a minute here; README gives the 3,000-line figures (by hand)
MOTO_RSS_LIMIT_MB = 1_000  # it was 15 GB at 1,200 jobs before the emulator's fixes
CHATJOBS = Path(sys.executable).with_name("chatjobs")


@pytest.fixture(scope="module")
def aws_local(module_launcher: Launcher, llm_stub_server: LLMStub) -> Api:
    # LLM_TIMEOUT_S=2: a killed worker's messages come back after 2 x (9 + 2) + 10 = 32 s.
    api = module_launcher.aws_local(**service_env(llm_stub_server, LLM_TIMEOUT_S="2"))
    api.http.headers["Authorization"] = f"Bearer {KEYS['t1']}"
    return api


def children(api: Api) -> dict[str, int]:
    return procs.children(api.proc.popen.pid)


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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_a_big_batch_completes_with_exact_counts(aws_local: Api, tmp_path: Path) -> None:
    lines = [
        json.dumps({"custom_id": f"r{n}", "messages": [{"role": "user", "content": f"q {n}"}]})
        for n in range(BIG_BATCH)
    ]
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n")
    env = procs.child_env(CHATJOBS_URL=aws_local.url, CHATJOBS_API_KEY=KEYS["t1"])
    command = [str(CHATJOBS)] if CHATJOBS.exists() else [sys.executable, "-m", "chatjobs_cli"]
    args = ["batch", "big.jsonl", "--wait", "--timeout", "150", "--out", "results.jsonl"]
    done = subprocess.run(
        [*command, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=170
    )
    assert done.returncode == 0, done.stderr

    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [row["custom_id"] for row in rows] == [f"r{n}" for n in range(BIG_BATCH)]
    assert Counter(row["status"] for row in rows) == {"succeeded": BIG_BATCH}
    batch_id = aws_local.job(rows[0]["job_id"])["batch_id"]
    batch = aws_local.http.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "completed"
    assert batch["counts"] == {
        "total": BIG_BATCH, "queued": 0, "running": 0, "succeeded": BIG_BATCH, "failed": 0,
        "cancelled": 0,
    }  # fmt: skip
    assert rss_mb(aws_local.proc.popen.pid) < MOTO_RSS_LIMIT_MB


def test_accepted_jobs_survive_kill_9_and_sigterm_stops_everything(
    aws_local: Api, llm_stub: LLMStub
) -> None:
    api = aws_local
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
    assert all(procs.gone(pid) for pid in running), api.proc.log()
