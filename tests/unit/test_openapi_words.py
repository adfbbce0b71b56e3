"""The OpenAPI document explains itself: every operation (webhooks too), parameter, schema and
schema property has a description; parameters and request bodies have examples; the rules that
can be stated in JSON Schema are (cursor, webhook_url, the served models)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared.models import WEBHOOK_URL_PATTERN
from tests.unit.conftest import Api, running_api

Node = dict[str, Any]
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


@pytest.fixture
async def document(api: Api) -> Node:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    body: Node = response.json()
    return body


def resolve(document: Node, node: Node) -> Node:
    while "$ref" in node:
        found: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            found = found[part]
        node = found
    return node


def operations(document: Node) -> Iterator[tuple[str, Node]]:
    for section in ("paths", "webhooks"):
        for path, item in document.get(section, {}).items():
            for method, operation in item.items():
                if method in METHODS:
                    yield f"{method.upper()} {path}", operation


def schema_properties(document: Node) -> Iterator[tuple[str, Node]]:
    for name, schema in document["components"]["schemas"].items():
        for field, definition in schema.get("properties", {}).items():
            yield f"{name}.{field}", definition


def has_example(node: Node) -> bool:
    return bool(node.get("example") is not None or node.get("examples"))


def test_every_operation_is_described(document: Node) -> None:
    missing = [name for name, op in operations(document) if not op.get("description")]
    assert not missing, f"operations without a description (a route docstring): {missing}"
    unnamed = [name for name, op in operations(document) if not op.get("summary")]
    assert not unnamed, f"operations without a summary: {unnamed}"


def test_every_parameter_is_described_with_an_example(document: Node) -> None:
    undescribed, no_example = [], []
    for name, operation in operations(document):
        for parameter in operation.get("parameters", []):
            where = f"{name} {parameter['in']}:{parameter['name']}"
            if not parameter.get("description"):
                undescribed.append(where)
            if not (has_example(parameter) or has_example(parameter.get("schema", {}))):
                no_example.append(where)
    assert not undescribed, f"parameters without a description: {undescribed}"
    assert not no_example, f"parameters without an example: {no_example}"


def test_every_schema_and_property_is_described(document: Node) -> None:
    schemas = document["components"]["schemas"]
    undescribed = [name for name, schema in schemas.items() if not schema.get("description")]
    assert not undescribed, f"schemas without a description (a docstring): {undescribed}"
    missing = [name for name, prop in schema_properties(document) if not prop.get("description")]
    assert not missing, f"schema properties without a description: {missing}"


def test_request_bodies_have_examples(document: Node) -> None:
    bodies = 0
    for name, operation in operations(document):
        if name.startswith("POST /v1/") and "requestBody" in operation:
            for media_type, content in operation["requestBody"]["content"].items():
                bodies += 1
                schema = resolve(document, content["schema"])
                assert has_example(content) or has_example(schema), (name, media_type)
    assert bodies >= 3  # the job, and the batch as JSON and as NDJSON


def test_request_fields_have_examples(document: Node) -> None:
    schemas = document["components"]["schemas"]
    for name in ("JobCreate", "BatchCreate", "BatchItem", "Message"):
        missing = [f for f, prop in schemas[name]["properties"].items() if not has_example(prop)]
        assert not missing, f"{name} fields without an example: {missing}"


def test_body_examples_are_valid_requests(document: Node) -> None:
    from shared.models import BatchCreate, JobCreate

    for model in (JobCreate, BatchCreate):
        for example in document["components"]["schemas"][model.__name__]["examples"]:
            model.model_validate(example)


def test_the_cursor_and_webhook_url_rules_are_in_the_schema(document: Node) -> None:
    listing = document["paths"]["/v1/jobs"]["get"]["parameters"]
    cursor = next(p for p in listing if p["name"] == "cursor")["schema"]["anyOf"][0]
    assert cursor["pattern"] and cursor["maxLength"] == 1024
    for schema in ("JobCreate", "BatchItem", "BatchCreate"):
        url = document["components"]["schemas"][schema]["properties"]["webhook_url"]["anyOf"][0]
        assert url["pattern"] == WEBHOOK_URL_PATTERN and url["maxLength"] == 2048, schema
    batch = document["paths"]["/v1/batches"]["post"]["parameters"]
    query = next(p for p in batch if p["name"] == "webhook_url")["schema"]["anyOf"][0]
    assert query["pattern"] == WEBHOOK_URL_PATTERN


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://hooks.example.com/chatjobs", True),
        ("http://receiver.internal:8080/in?x=1#frag", True),
        ("http://203.0.113.7/hook", True),
        ("https://example.com.", True),
        ("https://[2001:db8::1]:8443/in", True),
        ("https://[::1]/", True),  # the shape is right; the address is refused later (SSRF)
        ("https://[2001:db8::1/", False),
        ("https://[1:2:3]/", False),
        ("ftp://example.com/", False),
        ("https://user:pw@example.com/", False),
        ("https://999.1.1.1/", False),
        ("https://example.com:0/", False),
        ("https://example.com:65536/", False),
        ("https://exa mple.com/", False),
        ("https://example.com/ä", False),
        ("", False),
    ],
)
def test_webhook_url_pattern(url: str, valid: bool) -> None:
    assert (re.search(WEBHOOK_URL_PATTERN, url) is not None) is valid


async def test_model_lists_the_models_this_deployment_serves() -> None:
    async with running_api(model_aliases="fast=gemini-2.5-flash-lite") as api:
        document = (await api.client.get("/openapi.json")).json()
    names = ["gemini-2.5-flash", "openai/gpt-4o-mini", "fast"]
    for schema in ("JobCreate", "BatchItem"):
        model = document["components"]["schemas"][schema]["properties"]["model"]
        assert model["anyOf"][0]["enum"] == names, schema
        assert "422" in model["description"]
