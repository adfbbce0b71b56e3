"""`make aws-local`: the AWS layout on one machine, with no AWS account.

Runs moto's server (shared/adapters/aws/emulator.py) in this process on a free loopback port,
creates the table, queues and secret there with the names and queue settings Terraform uses,
then runs the API (`python -m api` on HOST:PORT) and one SQS-polling worker
(`QUEUE_BACKEND=sqs python -m worker`) as child processes, and supervises them:

- a child that dies is started again (after 1, 2, 4 … 30 s when it keeps dying within
  QUICK_EXIT_S of its start; after MAX_QUICK_EXITS such exits in a row the launcher gives up).
  The AWS state lives in this process, so nothing accepted is lost: the jobs a dead worker held
  come back to the new one when their messages' visibility runs out.
- Ctrl-C, SIGTERM or SIGHUP stops the children (SIGTERM, then SIGKILL after STOP_GRACE_S) and
  the server. The state is in memory: it ends with the launcher.

The README's curl walk-through works against it unchanged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.emulator import moto_server
from shared.adapters.aws.setup import AwsLayout, create_layout

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "aws-local",
    "AWS_SECRET_ACCESS_KEY": "aws-local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
CHILDREN = {"api": ["-m", "api"], "worker": ["-m", "worker"]}
CHECK_EVERY_S = 0.2
QUICK_EXIT_S = 10.0  # a child that exits sooner than this after its start is failing to start
MAX_QUICK_EXITS = 5
MAX_BACKOFF_S = 30.0
STOP_GRACE_S = 4.0  # then SIGKILL: a worker's unfinished jobs come back after their visibility
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def say(text: str) -> None:
    print(f"aws-local: {text}", flush=True)


@dataclass
class Child:
    """One supervised process: `python <args>` with `env`."""

    name: str
    args: Sequence[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0  # in a row
    restart_at: float | None = None  # when it is down and waiting to be started again

    def start(self) -> None:
        self.popen = subprocess.Popen([sys.executable, *self.args], env=self.env)
        self.started_at, self.restart_at = time.monotonic(), None
        say(f"started {self.name} (pid {self.popen.pid})")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> bool:
        """Start it again if it died (with backoff); False once it keeps failing to start."""
        now = time.monotonic()
        if self.alive():
            return True
        if self.restart_at is None:
            self.restart_at = now + self._backoff_s(now)
        if self.quick_exits >= MAX_QUICK_EXITS:
            say(f"{self.name} exited {self.quick_exits} times right after starting; giving up")
            return False
        if now >= self.restart_at:
            self.start()
        return True

    def _backoff_s(self, now: float) -> float:
        code = self.popen.returncode if self.popen else None
        quick = now - self.started_at < QUICK_EXIT_S
        self.quick_exits = self.quick_exits + 1 if quick else 0
        delay = min(2.0 ** (self.quick_exits - 1), MAX_BACKOFF_S) if quick else 0.0
        say(f"{self.name} exited with status {code}; starting it again in {delay:.0f} s")
        return delay


@dataclass
class Supervisor:
    children: list[Child]
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> int:
        """Until a stop signal (0) or a child that cannot start (1)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda *_: self.stopped.set())
        try:
            for child in self.children:
                child.start()
            while not self.stopped.wait(CHECK_EVERY_S):
                if not all(child.check() for child in self.children):
                    return 1
            return 0
        finally:
            self.stop_children()

    def stop_children(self) -> None:
        running = [c.popen for c in reversed(self.children) if c.alive() and c.popen]
        for popen in running:
            popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for popen in running:
            try:
                popen.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


async def make_layout(endpoint: str) -> AwsLayout:
    clients = AwsClients(endpoint_url=endpoint)
    try:
        secret = {k: os.environ[k] for k in names.SECRET_KEYS if os.environ.get(k)}
        return await create_layout(clients, secret=secret)
    finally:
        await clients.close()


def layout_env(endpoint: str, layout: AwsLayout) -> dict[str, str]:
    env = {**os.environ, **FAKE_CREDENTIALS, **layout.env(), "AWS_ENDPOINT_URL": endpoint}
    for key in names.SECRET_KEYS:  # they come from the secret, as on Lambda
        env.pop(key, None)
    return env


def main() -> int:
    os.environ.update(FAKE_CREDENTIALS)
    with moto_server() as endpoint:
        layout = asyncio.run(make_layout(endpoint))
        say(f"moto server on {endpoint} (pid {os.getpid()}); table {layout.table}")
        env = layout_env(endpoint, layout)
        children = [Child(name, args, env) for name, args in CHILDREN.items()]
        code = Supervisor(children).run()
    say("stopped")
    return code


def exit_now(code: int) -> None:
    """Leave without tearing down moto's heap object by object (seconds on a busy machine):
    the children and the server are stopped already, and nothing else is left to flush."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
