"""infra/grafana/chatjobs.json: an importable Grafana dashboard whose every query reads only
series and labels that GET /metrics really exports.

The exported names come from the real app in the embedded layout (SQLite, the in-process queue,
the offline provider), served in-process, after it answered a job, a cache hit and a bad request,
so that labelled counters and histograms exist. The worker's WORKER_METRICS_PORT serves the same
job metrics (one JobMetrics class), so these cover the self-hosted mode's both scrape targets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from shared.factory import ServiceFactory
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "chatjobs.json"
KEY = {"Authorization": "Bearer k1"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
    | {"offset", "inf", "nan"}
)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows' nested panels included."""
    found = []
    for panel in model["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return found


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are neither functions,
    keywords, label names (in `{…}` or a `by (…)` clause) nor range durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(?!\s*\()", text)
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring clauses."""
    matchers = [m for block in re.findall(r"\{([^}]*)\}", expr) for m in block.split(",")]
    names = {re.split(r"\s*(?:=~|!~|!=|=)", m.strip())[0] for m in matchers if m.strip()}
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names |= {name.strip() for name in clause.split(",") if name.strip()}
    return names


@pytest.fixture
async def exported(tmp_path: Path) -> dict[str, set[str]]:
    """Sample name -> its label names, as scraped from a running embedded app."""
    directory = tmp_path
    settings = make_settings(
        api_keys="t1:k1",
        sqlite_path=str(directory / "chatjobs.db"),
        files_dir=str(directory / "files"),
    )
    app = create_app(ServiceFactory(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            text = await _exercise(client)
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


async def _exercise(client: httpx.AsyncClient) -> str:
    body = {"messages": [{"role": "user", "content": "Name three prime numbers"}]}
    submitted = await client.post("/v1/jobs", json=body, headers=KEY)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    done = await client.get(f"/v1/jobs/{job_id}", params={"wait": 20}, headers=KEY)
    assert done.json()["status"] == "succeeded", done.text
    cached = await client.post("/v1/jobs", json=body, headers=KEY)
    assert cached.status_code == 200 and cached.json()["cached"] is True, cached.text
    refused = await client.post("/v1/jobs", json={"messages": []}, headers=KEY)
    assert refused.status_code == 422
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    return scraped.text


def test_dashboard_is_an_importable_model() -> None:
    model = dashboard()
    assert model["title"] and model["uid"] and isinstance(model["schemaVersion"], int)
    assert "id" not in model or model["id"] is None  # Grafana assigns the id on import
    (variable,) = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in model["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["refId"]


def test_dashboard_covers_what_operators_look_for() -> None:
    titles = " / ".join(title.lower() for title, _ in queries(dashboard()))
    for subject in (
        "backlog",
        "running",
        "queue wait",
        "jobs finished",
        "p50",
        "p95",
        "status code",
        "cache hit",
        "fallback",
        "provider",
    ):
        assert subject in titles, f"no panel about {subject!r}"


def test_series_names_reads_names_not_functions_or_labels() -> None:
    expr = (
        'sum by (le, route) (rate(chatjobs_x_bucket{status=~"5..", a="b"}[5m])) '
        "/ scalar(sum(chatjobs_y_total)) and on (instance) up"
    )
    assert series_names(expr) == {"chatjobs_x_bucket", "chatjobs_y_total", "up"}
    assert label_names(expr) == {"le", "route", "status", "a", "instance"}


def test_every_query_reads_only_exported_series_and_labels(
    exported: dict[str, set[str]],
) -> None:
    assert "chatjobs_jobs_finished_total" in exported  # the job ran: labelled series exist
    for title, expr in queries(dashboard()):
        names = series_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = names - set(exported)
        assert not unknown, f"{title}: /metrics exports no {sorted(unknown)} ({expr})"
        labels = set().union(*(exported[name] for name in names)) | TARGET_LABELS
        stray = label_names(expr) - labels
        assert not stray, f"{title}: {sorted(names)} carry no label {sorted(stray)}"


def test_prometheus_example_scrapes_the_compose_api_and_every_worker() -> None:
    config = yaml.safe_load((ROOT / "infra" / "grafana" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_port = compose["api"]["environment"]["PORT"]
    assert jobs["chatjobs-api"]["static_configs"] == [{"targets": [f"api:{api_port}"]}]
    (workers,) = jobs["chatjobs-worker"]["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["type"] == "A"
    assert str(workers["port"]) == compose["worker"]["environment"]["WORKER_METRICS_PORT"]
