"""End-to-end fixtures: the real `python -m api` and `python -m worker` processes, driven over HTTP.

- `launcher`: starts API and worker processes for one test (`launcher.api(...)`,
  `launcher.worker(...)`) and always stops them afterwards, failed test or not. On a failure the
  tail of every process's log is printed with the test's report. `module_launcher` is the same
  for processes shared by a module's tests. It is the only way the e2e tests start processes.
- `llm_stub` (tests/stubs/fixtures.py): the stub Gemini/OpenRouter server, in a thread of the test
  process, reset before and after each test; the processes reach it over loopback.

Every process runs in a scratch directory (no developer `.env`), with a scrubbed environment, its
SQLite file under the test's tmp_path, and a test webhook signing secret.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from tests.e2e import procs
from tests.stubs.fixtures import LLMStub

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
STOP_TIMEOUT_S = 10.0
AWS_LOCAL_READY_S = 90.0  # moto and the layout first, then the API and the worker start
LOG_TAIL_CHARS = 6_000

BASE_ENV = {
    "HOST": "127.0.0.1",
    "WEBHOOK_SIGNING_SECRET": "e2e-test-master-secret",
    "RATE_LIMIT": "100000/minute",
    "AUTH_FAILURE_LIMIT": "100000/minute",
}
# `python -m api` with RLIMIT_NOFILE set to {0} first
LIMITED_API = (
    "import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({0}, {0})); "
    "runpy.run_module('api', run_name='__main__', alter_sys=True)"
)
SETTINGS_VARS = frozenset(name.upper() for name in Settings.model_fields)


def stub_llm_env(stub: LLMStub, *, openrouter: bool = True) -> dict[str, str]:
    """Point the processes' Gemini (and OpenRouter) at the stub with fake keys."""
    env = {"GEMINI_API_KEY": "test", "GEMINI_BASE_URL": stub.gemini_base_url}
    if openrouter:
        env |= {"OPENROUTER_API_KEY": "test", "OPENROUTER_BASE_URL": stub.openrouter_base_url}
    return env


def chat(prompt: str, **fields: Any) -> dict[str, Any]:
    """A job submit body with one user message."""
    return {"messages": [{"role": "user", "content": prompt}], **fields}


@dataclass
class Api:
    """A running `python -m api` and an HTTP client for it."""

    proc: procs.Proc
    url: str
    sqlite_path: Path
    env: dict[str, str]
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = self.client()

    def client(self, key: str | None = None) -> httpx.Client:
        """A new client (closed by the caller), authenticated with `key` if given."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=40, trust_env=False)

    def submit(self, prompt: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=chat(prompt, **fields))
        assert response.status_code in (200, 202), response.text
        job: dict[str, Any] = response.json()
        return job

    def job(
        self, job_id: str, wait: float = 0, client: httpx.Client | None = None
    ) -> dict[str, Any]:
        response = (client or self.http).get(f"/v1/jobs/{job_id}", params={"wait": wait})
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_terminal(
        self, job_ids: list[str], timeout: float, client: httpx.Client | None = None
    ) -> dict[str, dict[str, Any]]:
        """Long-poll every job until it is terminal; fail after `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        done: dict[str, dict[str, Any]] = {}
        for job_id in job_ids:
            while True:
                left = deadline - time.monotonic()
                job = self.job(job_id, wait=round(min(max(left, 0), 30), 1), client=client)
                if job["status"] in TERMINAL:
                    done[job_id] = job
                    break
                if left <= 0:
                    pending = len(job_ids) - len(done)
                    raise AssertionError(
                        f"{pending} jobs not finished after {timeout}s; e.g. {job}"
                    )
        return done

    def close(self) -> None:
        self.http.close()


class Launcher:
    """Starts the service's processes for one test and stops every one of them at the end."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.procs: list[procs.Proc] = []
        self.apis: list[Api] = []
        self.logs = base_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self, **overrides: str) -> dict[str, str]:
        defaults = {
            **BASE_ENV,
            "SQLITE_PATH": str(self.base_dir / "chatjobs.db"),
            "FILES_DIR": str(self.base_dir / "files"),
        }
        return procs.child_env(**{**defaults, **overrides})

    def api(
        self,
        name: str = "api",
        port: int | None = None,
        open_files: int | None = None,
        /,
        **env: str,
    ) -> Api:
        """Start `python -m api` (with `open_files` as its open-file limit, if given) and wait
        until /readyz answers 200. `name`, `port` and `open_files` are positional only, so that
        an environment passed as `**dict[str, str]` can never be taken for them."""
        port = port or procs.free_port()
        full_env = self.env(PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"
        args = ["-m", "api"] if open_files is None else ["-c", LIMITED_API.format(open_files)]
        proc = self._start(name, args, full_env, ready_url=f"{url}/readyz")
        api = Api(proc, url, Path(full_env["SQLITE_PATH"]), full_env)
        self.apis.append(api)
        return api

    def aws_local(self, name: str = "aws-local", **env: str) -> Api:
        """Start `make aws-local`'s program (moto, the AWS layout, the API and an SQS-polling
        worker) on a free port, and wait until its API answers /readyz."""
        port = procs.free_port()
        full_env = self.env(PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"
        args = ["-m", "shared.adapters.aws.local"]
        proc = self._start(
            name, args, full_env, ready_url=f"{url}/readyz", ready_s=AWS_LOCAL_READY_S
        )
        api = Api(proc, url, Path(full_env["SQLITE_PATH"]), full_env)
        self.apis.append(api)
        return api

    def restart(self, api: Api, name: str, **env: str) -> Api:
        """The same API (port, SQLite file, settings) started again as a new process."""
        assert api.proc.popen.poll() is not None, "stop or kill the old process first"
        overrides = {k: v for k, v in api.env.items() if k in SETTINGS_VARS and k != "PORT"}
        overrides |= env
        return self.api(name, int(api.env["PORT"]), **overrides)

    def worker(self, name: str, **env: str) -> procs.Proc:
        """Start `python -m worker` and wait until arq has connected and is about to poll."""
        proc = self._start(name, ["-m", "worker"], self.env(**env))
        ready = procs.wait_for(lambda: _worker_started(proc), timeout=30, interval=0.05)
        if not ready:
            raise RuntimeError(f"{name} did not start:\n{proc.log()}")
        return proc

    def _start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        ready_url: str | None = None,
        ready_s: float = 30,
    ) -> procs.Proc:
        proc = procs.start(name, args, env, self.logs, cwd=self.base_dir)
        self.procs.append(proc)  # registered before waiting, so a failed start is cleaned up too
        if ready_url:
            procs.wait_ready(proc, ready_url, ready_s)
        return proc

    def stop_all(self) -> None:
        for api in self.apis:
            api.close()
        for proc in self.procs:
            proc.kill(signal.SIGTERM)
        for proc in self.procs:
            proc.stop(timeout=STOP_TIMEOUT_S)

    def log_tails(self) -> str:
        parts = []
        for proc in self.procs:
            text = proc.log() if proc.log_path.exists() else ""
            code = proc.popen.returncode
            parts.append(f"----- {proc.name} (exit {code}) -----\n{text[-LOG_TAIL_CHARS:]}")
        return "\n".join(parts)


def _worker_started(proc: procs.Proc) -> bool:
    if proc.popen.poll() is not None:
        raise RuntimeError(f"{proc.name} exited early:\n{proc.log()}")
    return "Starting worker for" in proc.log()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report carries the tail of every process log it used."""
    report = yield
    if report.failed and report.when == "call":
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for launcher in funcargs.values():
            if isinstance(launcher, Launcher):
                report.sections.append(("process logs", launcher.log_tails()))
    return report


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """For a module whose tests share processes (e.g. one API serving many HTTP checks)."""
    started = Launcher(tmp_path_factory.mktemp("e2e"))
    try:
        yield started
    finally:
        started.stop_all()
