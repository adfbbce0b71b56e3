"""The command-line tools tests run, found whether pytest runs through `uv run` (the venv's bin
directory on PATH) or as `.venv/bin/python -m pytest` from a shell without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def find_tool(name: str) -> str | None:
    """`name` on PATH, else beside the running interpreter (where the dev dependencies put
    hadolint, actionlint, ruff and the `chatjobs` command)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def find_uv() -> list[str] | None:
    """The command that runs uv: UV (which `uv run` exports, also when started as
    `python3 -m uv`), a `uv` binary, or a Python that has the uv module."""
    for candidate in (os.environ.get("UV"), find_tool("uv")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    for python in filter(None, (shutil.which("python3"), sys.executable)):
        probe = subprocess.run([python, "-m", "uv", "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [python, "-m", "uv"]
    return None
