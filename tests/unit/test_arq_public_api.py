"""Our code uses arq through its documented API only (https://arq-docs.helpmanual.io, "Reference").

A scan of api/, worker/ and shared/ (AST, no imports of our code) fails on:
- an import from arq of anything its reference does not document (`arq.constants`, `arq.utils`,
  `serialize_job`, any `_name`…);
- a class of ours that subclasses an arq class (overriding its methods is how private hooks get
  used);
- in a module that imports arq: reading or calling a `_name` on anything but our own `self`/`cls`,
  or any member of arq's `Worker` that its reference does not document (`start_jobs`,
  `job_counter`, `tasks`, `sem`, `allow_pick_jobs`, `_poll_iteration`, …; the list is taken from
  the installed arq, so a new internal is caught too);
- anywhere: the names issue 14 found patched, whatever object they are read on.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq import Worker

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("api", "worker", "shared", "chatjobs_cli")

# What arq's reference documents (docs/index.rst: automodule arq.connections (all members),
# arq.worker (func, Retry, Worker), arq.cron (cron), arq.jobs (JobStatus, Job)), and the package
# root's re-exports of those.
DOCUMENTED_IMPORTS: dict[str, set[str]] = {
    "arq": {"ArqRedis", "create_pool", "cron", "Retry", "Worker", "func"},
    "arq.connections": {"ArqRedis", "RedisSettings", "create_pool"},
    "arq.worker": {"func", "Retry", "Worker"},
    "arq.cron": {"cron"},
    "arq.jobs": {"JobStatus", "Job"},
}
DOCUMENTED_WORKER_MEMBERS = {"run", "async_run", "run_check", "close"}
# Found patched or read by issue 14; refused anywhere in our code.
KNOWN_INTERNALS = {
    "_poll_iteration",
    "start_jobs",
    "job_counter",
    "allow_pick_jobs",
    "_release_sem_dec_counter_on_complete",
    "in_progress_timeout_s",
    "_job_completion_wait",
}


def undocumented_worker_members() -> set[str]:
    async def noop(ctx: dict[str, object]) -> None:
        return None

    # a stand-in pool: the Worker is only inspected, never run
    worker = Worker(functions=[noop], redis_pool=object(), handle_signals=False)  # type: ignore[arg-type]
    names = set(dir(Worker)) | set(vars(worker))
    ours = set(dir(Settings))  # `settings.job_timeout_s` is ours, whatever arq calls its own
    return {n for n in names if not n.startswith("__")} - DOCUMENTED_WORKER_MEMBERS - ours


def sources() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def arq_names(tree: ast.Module) -> tuple[list[tuple[int, str]], set[str]]:
    """(line, message) for every undocumented arq import, and the names arq's imports bind."""
    problems, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "arq" or alias.name.startswith("arq."):
                    problems.append((node.lineno, f"`import {alias.name}`: import names instead"))
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module != "arq" and not node.module.startswith("arq."):
                continue
            allowed = DOCUMENTED_IMPORTS.get(node.module, set())
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if alias.name not in allowed:
                    where = f"from {node.module} import {alias.name}"
                    problems.append((node.lineno, f"`{where}` is not in arq's reference"))
    return problems, bound


def own(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def problems_in(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    problems, arq_bound = arq_names(tree)
    internals = undocumented_worker_members() if arq_bound else set()
    for node in ast.walk(tree):
        message = problem_of(node, arq_bound, internals)
        if message is not None:
            problems.append((getattr(node, "lineno", 0), message))
    return sorted(problems)


def problem_of(node: ast.AST, arq_bound: set[str], internals: set[str]) -> str | None:
    if isinstance(node, ast.ClassDef):
        arq_bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in arq_bound]
        return f"class {node.name} subclasses arq's {arq_bases[0]}" if arq_bases else None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in KNOWN_INTERNALS:
        return f"`def {node.name}` overrides an arq internal"
    if not isinstance(node, ast.Attribute):
        return None
    name = node.attr
    if name in KNOWN_INTERNALS:
        return f"`.{name}` is an arq internal"
    private = name.startswith("_") and not name.startswith("__")
    if arq_bound and not own(node.value) and (private or name in internals):
        return f"`.{name}` is not in arq's reference"
    return None


def violations(path: Path) -> Iterator[str]:
    relative = path.relative_to(ROOT)
    for line, message in problems_in(path.read_text()):
        yield f"{relative}:{line}: {message}"


def test_our_code_uses_arq_through_its_documented_api_only() -> None:
    found = [problem for path in sources() for problem in violations(path)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "from arq.constants import job_key_prefix",
        "from arq.jobs import serialize_job",
        "from arq.utils import timestamp_ms",
        "import arq.worker",
        "from arq import Worker\nclass W(Worker):\n    pass",
        "from arq import Worker\ndef f(w: Worker):\n    return w.job_counter",
        "from arq import Worker\nasync def f(w: Worker):\n    await w.start_jobs([])",
        "from arq import Worker\ndef f(w: Worker):\n    return w.tasks",
        "from arq import Worker\ndef f(w: Worker):\n    w.allow_pick_jobs = False",
        "from arq.connections import ArqRedis\ndef f(r: ArqRedis):\n    return r._get_job_def",
        "from arq.jobs import Job\ndef f(j: Job):\n    return j._redis",
        "async def _poll_iteration(self):\n    pass",
        "def f(worker):\n    worker._release_sem_dec_counter_on_complete()",
    ],
)
def test_the_scan_catches(code: str) -> None:
    assert problems_in(code), f"not caught:\n{code}"


def test_the_scan_lets_documented_use_through() -> None:
    code = (
        "from arq import Retry, Worker\n"
        "from arq.connections import ArqRedis, RedisSettings, create_pool\n"
        "from arq.jobs import Job, JobStatus\n"
        "async def f(pool: ArqRedis, worker: Worker) -> None:\n"
        "    await pool.enqueue_job('run_job', 'job_1', _job_id='job_1', _defer_by=1)\n"
        "    await Job('job_1', pool, _queue_name='q').status()\n"
        "    await worker.async_run()\n"
        "    raise Retry(defer=2)\n"
    )
    assert problems_in(code) == []
