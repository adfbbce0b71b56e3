"""The documents stay true to the tree: docs/ARCHITECTURE.md names every module of api/, worker/
and shared/, and every path, test (`path::name`) and relative link that README.md and docs/ cite
exists. A rename or a new module then breaks this test rather than leaving the documents stale."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
CODE_DIRS = ("api", "worker", "shared", "chatjobs_cli")
# Named in the documents ahead of their arrival from other branches; may be absent or present.
PENDING = frozenset({"shared/adapters/store/dynamodb.py", "docs/PERFORMANCE.md"})
# Files the reader creates by following the documents.
READERS_OWN = frozenset({"infra/terraform/terraform.tfvars"})

REPO_PATH = re.compile(
    r"`((?:api|worker|shared|chatjobs_cli|tests|infra|docs|scripts)/[\w./-]*[\w/])`"
)
# `tests/x.py::name`, `tests/x.py::Class::name`, or `::name` for a test of the file named last
TEST_REF = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)*)|`((?:::\w+)+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@cache
def text(path: Path) -> str:
    return path.read_text()


def modules() -> list[str]:
    """Every module of the code, and every package as `dir/`; empty `__init__.py` files aside."""
    found: set[str] = set()
    for top in CODE_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT)
            found.add(f"{rel.parent.as_posix()}/")
            if path.name != "__init__.py" or path.read_text().strip():
                found.add(rel.as_posix())
    return sorted(found)


def test_architecture_names_every_module() -> None:
    missing = [m for m in modules() if f"`{m}`" not in text(ARCHITECTURE)]
    assert not missing, f"add these to the map of the tree in docs/ARCHITECTURE.md: {missing}"


def test_every_cited_path_exists() -> None:
    missing = [
        f"{name(doc)}: {p}"
        for doc in documents()
        for p in REPO_PATH.findall(text(doc))
        if p.rstrip("/") not in PENDING | READERS_OWN and not (ROOT / p).exists()
    ]
    assert not missing, f"the documents cite paths that do not exist: {missing}"


def test_every_cited_test_exists() -> None:
    missing = [f"{name(doc)}: {ref}" for doc in documents() for ref in missing_tests(text(doc))]
    assert not missing, f"the documents name tests that do not exist: {missing}"


def missing_tests(document: str) -> list[str]:
    missing, path = [], ""
    for named_path, full, short in TEST_REF.findall(document):
        path, names = (named_path, full) if named_path else (path, short)
        if not names:
            continue  # a file named on its own: test_every_cited_path_exists checks it
        source = ROOT / path
        code = source.read_text() if source.is_file() else ""
        patterns = [
            rf"^class {part}\b" if part[0].isupper() else rf"^\s*(?:async )?def {part}\("
            for part in names.strip(":").split("::")
        ]
        if not all(re.search(pattern, code, re.M) for pattern in patterns):
            missing.append(f"{path}{names}")
    return missing


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in documents():
        for target in LINK.findall(text(doc)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            resolved = (doc.parent / target.split("#")[0]).resolve()
            if resolved.relative_to(ROOT).as_posix() not in PENDING and not resolved.exists():
                broken.append(f"{name(doc)}: {target}")
    assert not broken, f"the documents link to files that do not exist: {broken}"


def test_the_checks_catch_a_missing_test() -> None:
    document = "`tests/unit/test_docs_map.py::test_every_cited_test_exists`, `::no_such_test`"
    assert missing_tests(document) == ["tests/unit/test_docs_map.py::no_such_test"]


def name(doc: Path) -> str:
    return doc.relative_to(ROOT).as_posix()
