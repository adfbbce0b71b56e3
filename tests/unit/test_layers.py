"""Import rules between layers, checked on the source (no import side effects)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules below the adapters: they may be imported by adapters, never the other way round.
CORE = ["shared/config.py", "shared/transitions.py", "shared/models.py", "shared/ports.py",
        "shared/model_catalog.py", "shared/secrets_source.py", "shared/usage.py"]  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_core_imports_no_adapter() -> None:
    offenders = {
        module: sorted(
            n for n in imported_modules(ROOT / module) if n.startswith("shared.adapters")
        )
        for module in CORE
    }
    assert {m: names for m, names in offenders.items() if names} == {}
