"""`make dev` in a fresh clone: .env from .env.example, an executable pre-commit hook that runs
ruff on what is staged, and what to run next. The venv step (`uv sync`, what `make bootstrap`
does for every target) is marked done beforehand so the test stays fast; the clone is of the
committed tree (HEAD), as a new developer gets it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools import find_tool

ROOT = Path(__file__).resolve().parents[2]
RUFF = find_tool("ruff") or str(Path(ROOT, ".venv", "bin", "ruff"))


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    isolated = {  # no global git config (hooksPath, identity) leaks in or out
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        **env,
    }
    return subprocess.run(
        args, cwd=cwd, env=isolated, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    repo = tmp_path / "chatjobs"
    cloned = run("git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(repo), cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    (repo / ".venv").mkdir()
    (repo / ".venv" / ".synced").touch()  # newer than pyproject.toml and uv.lock: venv "done"
    yield repo


def test_make_dev_creates_env_and_the_hook_and_says_what_next(clone: Path) -> None:
    done = run("make", "dev", cwd=clone)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (clone / ".env").read_text() == (clone / ".env.example").read_text()
    hook = clone / ".git" / "hooks" / "pre-commit"
    assert hook.is_file() and os.access(hook, os.X_OK)
    assert "scripts/pre-commit" in hook.read_text()
    for step in ("make run", "make test", "make diagrams"):
        assert step in done.stdout

    (clone / ".env").write_text("API_KEYS=me:mine\n")  # a second run keeps a developer's .env
    again = run("make", "dev", cwd=clone)
    assert again.returncode == 0, again.stderr
    assert (clone / ".env").read_text() == "API_KEYS=me:mine\n"


def test_make_dev_leaves_a_foreign_hook_alone(clone: Path) -> None:
    hook = clone / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    done = run("make", "dev", cwd=clone)
    assert done.returncode == 0, done.stderr
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
    assert "left alone" in done.stderr


def test_the_hook_refuses_staged_python_that_ruff_rejects(clone: Path) -> None:
    assert run("make", "dev", cwd=clone).returncode == 0
    module = clone / "shared" / "scratch.py"

    module.write_text("import os\nx=1\n")  # unused import, unformatted
    run("git", "add", "shared/scratch.py", cwd=clone)
    refused = run("git", "commit", "-qm", "bad", cwd=clone, RUFF=RUFF)
    assert refused.returncode != 0
    assert "F401" in refused.stdout + refused.stderr
    assert "shared/scratch.py: not formatted" in refused.stderr

    module.write_text('"""Fine."""\n\nx = 1\n')  # fixed in the working copy only:
    assert run("git", "commit", "-qm", "bad", cwd=clone, RUFF=RUFF).returncode != 0
    run("git", "add", "shared/scratch.py", cwd=clone)  # the staged content is what counts
    accepted = run("git", "commit", "-qm", "good", cwd=clone, RUFF=RUFF)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
