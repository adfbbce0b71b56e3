"""Ctrl-C on `make aws-local`: a terminal sends SIGINT to the launcher and to its children at
once (one foreground process group); everything stops within seconds, exit status 0."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.e2e import procs
from tests.e2e.conftest import Launcher
from tests.e2e.services import service_env
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e
STOP_WITHIN_S = 5.0  # README: "Ctrl-C stops it all within a second"; room for a loaded CI host


def test_ctrl_c_stops_the_launcher_and_its_children(
    launcher: Launcher, llm_stub_server: LLMStub
) -> None:
    api = launcher.aws_local("aws-local-ctrl-c", **service_env(llm_stub_server))
    running = procs.children(api.proc.popen.pid)
    assert set(running) == {"api", "worker"}, api.proc.log()
    stopping = time.monotonic()
    for pid in (api.proc.popen.pid, *running.values()):  # what a terminal's Ctrl-C does
        os.kill(pid, signal.SIGINT)
    assert api.proc.popen.wait(15) == 0, api.proc.log()
    took = time.monotonic() - stopping
    print(f"Ctrl-C: the launcher and its children stopped in {took:.2f} s")
    assert took < STOP_WITHIN_S, (took, api.proc.log())
    assert all(procs.gone(pid) for pid in running.values()), api.proc.log()
