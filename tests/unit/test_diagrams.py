"""The architecture diagrams name real things: every component that docs/diagrams/ draws is
looked up in the code (class, function, module), in infra/terraform (resource address), in
Settings (environment variable) or in docker-compose.yml (service). A rename in the code fails
here instead of leaving a stale picture. No Graphviz needed: the graphs are built, not rendered.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pytest
import yaml

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DIAGRAMS_DIR = ROOT / "docs" / "diagrams"
TERRAFORM_DIR = ROOT / "infra" / "terraform"
FACTORY = ROOT / "shared" / "factory.py"
EXPECTED = [
    "01_system_architecture",
    "02_aws_production",
    "03_request_flow",
    "04_local_development",
    "05_dependency_injection",
]

sys.path.insert(0, str(DIAGRAMS_DIR))
import diagram_parts  # noqa: E402
import generate_diagrams  # noqa: E402


class Component(Protocol):
    """What these tests read of diagram_parts.Component (mypy does not see docs/diagrams/)."""

    @property
    def kind(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def name(self) -> str: ...


CASES = [(d, c) for d in generate_diagrams.DIAGRAMS for c in d.COMPONENTS]


def case_id(case: Any) -> str:
    if isinstance(case, ModuleType):
        return str(case.FILENAME[:2])
    return f"{case.kind}:{case.ref}"


def test_the_five_diagrams_and_their_committed_pngs() -> None:
    assert [d.FILENAME for d in generate_diagrams.DIAGRAMS] == EXPECTED
    assert generate_diagrams.ASSET_DIR == ROOT / "docs" / "asset"
    for name in EXPECTED:
        png = ROOT / "docs" / "asset" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


@pytest.mark.parametrize("diagram", generate_diagrams.DIAGRAMS, ids=case_id)
def test_a_diagram_draws_exactly_the_components_it_lists(
    diagram: ModuleType, tmp_path: Path
) -> None:
    diagram.draw(tmp_path, render=False)
    drawn = list(diagram_parts.DRAWN)
    assert sorted(drawn, key=case_id) == sorted(diagram.COMPONENTS, key=case_id)
    ids = [c.node_id for c in drawn]
    assert len(ids) == len(set(ids)), "two nodes with one id"
    assert not list(tmp_path.iterdir()), "nothing is written without render"


@pytest.mark.parametrize(("diagram", "component"), CASES, ids=case_id)
def test_a_drawn_component_exists(diagram: ModuleType, component: Component) -> None:
    check = {
        "code": check_code,
        "terraform": check_terraform,
        "env": check_env,
        "compose": check_compose,
    }[component.kind]
    check(component)


def check_code(component: Component) -> None:
    module_name, _, qualname = component.ref.partition(":")
    if importlib.util.find_spec(module_name) is None:
        if f"from {module_name} import" in FACTORY.read_text():
            pytest.skip(f"{module_name}: wired in shared/factory.py, not in this tree yet")
        pytest.fail(f"no module {module_name} (drawn as {component.label!r})")
    target: Any = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        assert hasattr(target, part), f"{component.ref}: no {part!r} (drawn as {component.label!r})"
        target = getattr(target, part)
    assert shows(component.label, component.name), (
        f"the label {component.label!r} does not show the code's name {component.name!r}"
    )


def check_terraform(component: Component) -> None:
    if not TERRAFORM_DIR.is_dir():
        pytest.skip("infra/terraform is not in this tree yet")
    kind, _, name = component.ref.partition(".")
    assert (kind, name) in terraform_resources(), f"no resource {component.ref} in infra/terraform"


def check_env(component: Component) -> None:
    assert component.ref.lower() in Settings.model_fields, f"{component.ref} is not a setting"
    assert shows(component.label, component.ref), f"{component.label!r} hides {component.ref}"


def check_compose(component: Component) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert component.ref in compose["services"], f"no service {component.ref!r} in compose"


def shows(label: str, name: str) -> bool:
    """`name` is a word of the label (any case: `chatjobs_cli` is drawn as "chatjobs CLI")."""
    word = re.escape(name).replace("_", "[_ ]")
    return re.search(rf"(?<![\w]){word}(?![\w])", label, re.IGNORECASE) is not None


@cache
def terraform_resources() -> frozenset[tuple[str, str]]:
    pattern = re.compile(r'^resource\s+"([\w-]+)"\s+"([\w-]+)"', re.MULTILINE)
    found = set()
    for tf in TERRAFORM_DIR.glob("*.tf"):
        found.update(pattern.findall(tf.read_text()))
    return frozenset(found)
