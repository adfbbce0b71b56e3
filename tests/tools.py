"""Command-line tools the dev dependencies install into the venv (hadolint, actionlint, ...).

pytest may run as `uv run pytest` (the venv's bin/ is on PATH) or as `.venv/bin/python -m pytest`
(it need not be): look next to the interpreter running the tests first, then on PATH."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def dev_tool(name: str) -> str | None:
    """The path of the venv's `name`, else the one on PATH, else None."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
