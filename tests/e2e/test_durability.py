"""A job answered 202 is stored before the answer leaves: SIGKILL the API the moment 202s arrive,
while group commits are in flight, and every answered job is there after a restart."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.conftest import Launcher, chat

pytestmark = pytest.mark.e2e

SUBMITTERS = 16
KILL_AFTER = 40  # answered submits, counted across all submitters


def test_every_answered_submit_survives_a_sigkill_right_after_its_202(launcher: Launcher) -> None:
    api = launcher.api()
    answered: list[str] = []
    lock, killed = threading.Lock(), threading.Event()

    def submit_until_killed(n: int) -> None:
        with api.client() as http:
            for k in range(1_000):
                try:
                    response = http.post("/v1/jobs", json=chat(f"durable {n}.{k} {k * n}"))
                except httpx.TransportError:
                    return  # the API is gone
                if response.status_code != 202:
                    continue
                with lock:
                    answered.append(response.json()["id"])
                    if len(answered) >= KILL_AFTER and not killed.is_set():
                        api.proc.kill(signal.SIGKILL)  # at once: other submits still in flight
                        killed.set()
                if killed.is_set():
                    return

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(submit_until_killed, range(SUBMITTERS)))
    assert killed.is_set() and api.proc.popen.wait(10) == -signal.SIGKILL

    restarted = launcher.restart(api, "api-restarted")
    with lock:
        ids = list(answered)
    missing = [
        job_id for job_id in ids if restarted.http.get(f"/v1/jobs/{job_id}").status_code != 200
    ]
    assert missing == [], f"{len(missing)} of {len(ids)} answered jobs were lost"
    finished = restarted.wait_terminal(ids, timeout=60)
    assert {job["status"] for job in finished.values()} == {"succeeded"}
