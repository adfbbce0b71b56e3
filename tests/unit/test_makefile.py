"""The Makefile: serving targets install only what serving needs, the test targets add the dev
tools, the stamps keep both right when switching between them, and `make help` lists every
target. `make` runs for real in a copy of the Makefile, with a stand-in `uv` that records its
arguments (so nothing is installed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_UV = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/uv.log"
[ "$1" = sync ] && mkdir -p .venv
exit 0
"""
FULL_SYNC = "sync --frozen"
SERVING_SYNC = "sync --frozen --no-dev --inexact"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    uv = tmp_path / "bin" / "uv"
    uv.parent.mkdir()
    uv.write_text(FAKE_UV)
    uv.chmod(0o755)
    return tmp_path


def make(project: Path, *targets: str) -> list[str]:
    """Run `make targets` and return the uv commands it ran, one per call."""
    log = project / "bin" / "uv.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", f"UV={project / 'bin' / 'uv'}", *targets],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return log.read_text().splitlines() if log.exists() else []


def syncs(calls: list[str]) -> list[str]:
    return [call for call in calls if call.startswith("sync")]


def test_run_installs_no_dev_tools_and_serves_without_them(project: Path) -> None:
    calls = make(project, "run")
    assert syncs(calls) == [SERVING_SYNC]
    assert calls[-1] == "run --frozen --no-dev python -m api"


def test_aws_local_adds_only_its_emulator_group(project: Path) -> None:
    calls = make(project, "aws-local")
    assert syncs(calls) == [SERVING_SYNC]
    launcher = "python -m shared.adapters.aws.local"
    assert calls[-1] == f"run --frozen --no-dev --group aws-local {launcher}"


def test_switching_between_run_and_test_syncs_only_what_is_missing(project: Path) -> None:
    assert syncs(make(project, "run")) == [SERVING_SYNC]
    assert syncs(make(project, "test-unit")) == [FULL_SYNC]  # adds the dev tools
    assert syncs(make(project, "run")) == []  # the full venv serves: no sync, nothing removed
    assert syncs(make(project, "test-unit")) == []
    os.utime(project / "uv.lock")  # the lock changed: each side syncs again, once
    assert syncs(make(project, "run")) == [SERVING_SYNC]
    assert syncs(make(project, "test-unit")) == [FULL_SYNC]
    assert syncs(make(project, "run")) == []


def test_help_lists_every_target(project: Path) -> None:
    makefile = (project / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    listed = {line.split()[0] for line in shown.splitlines() if line.strip()}
    internal = {"serve-deps"}  # a prerequisite, not something to type
    assert set(phony.group(1).split()) - internal == listed
