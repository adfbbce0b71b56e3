"""Static checks of infra/terraform: formatting, parsing, checkov, and the names the code relies on.

`terraform validate` needs the AWS provider, which cannot be downloaded here, so the Terraform is
read with python-hcl2 and the few expressions the checks need (variable defaults, locals, string
interpolation, arithmetic) are resolved in this file. Everything the code takes from
shared/adapters/aws/names.py and shared/config.py is compared with what Terraform creates.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import operator
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import limits
import pytest

from shared.adapters.aws import names, setup
from shared.config import Settings
from tests.tools import find_tool, find_uv

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "infra" / "terraform"
TF_FILES = sorted(TF_DIR.glob("*.tf"))
CHECKOV = "checkov==3.3.30"  # pinned: a new checkov release adds checks, not surprises in CI

# Environment variables a function may carry besides Settings fields: none so far. (AWS_REGION and
# the other names Lambda reserves cannot be set on a function at all.)
NON_SETTINGS_ENV: frozenset[str] = frozenset()
SETTINGS_ENV = frozenset(field.upper() for field in Settings.model_fields)
HANDLERS = {
    "api": names.API_HANDLER,
    "worker": names.WORKER_HANDLER,
    "scheduler": names.SCHEDULED_HANDLER,
}


# --- reading the Terraform ---------------------------------------------------------------------


@cache
def parsed(path: Path) -> dict[str, Any]:
    options = hcl2.SerializationOptions(
        strip_string_quotes=True, with_comments=False, explicit_blocks=False
    )
    with path.open() as file:
        loaded: dict[str, Any] = hcl2.load(file, serialization_options=options)
    return loaded


def blocks(kind: str, type_: str | None = None) -> dict[str, Any]:
    """`resource`/`data` blocks of one type, or `variable`/`output` blocks, by name."""
    found: dict[str, Any] = {}
    for path in TF_FILES:
        for entry in parsed(path).get(kind, []):
            if type_ is None:
                found.update(entry)
            else:
                found.update(entry.get(type_, {}))
    return found


def locals_() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in TF_FILES:
        for entry in parsed(path).get("locals", []):
            merged.update(entry)
    return merged


def resource(type_: str, name: str) -> dict[str, Any]:
    found = blocks("resource", type_)
    assert name in found, f"no {type_}.{name} in infra/terraform"
    body: dict[str, Any] = found[name]
    return body


class Unresolved(Exception):
    """The expression depends on something only known at apply time."""


_REF = re.compile(r"\b(var|local)\.([A-Za-z_][A-Za-z0-9_]*)")
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _template_parts(text: str) -> list[tuple[bool, str]]:
    """Split `a${x}b` into literal and expression parts, honouring nested braces."""
    parts: list[tuple[bool, str]] = []
    i = 0
    while (start := text.find("${", i)) != -1:
        if start > i:
            parts.append((False, text[i:start]))
        depth, j = 0, start + 1
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        parts.append((True, text[start + 2 : j]))
        i = j + 1
    if i < len(text):
        parts.append((False, text[i:]))
    return parts


def _reference(kind: str, name: str) -> Any:
    if kind == "var":
        variable = blocks("variable").get(name)
        if variable is None or "default" not in variable:
            raise Unresolved(f"var.{name} has no default")
        return resolve(variable["default"])
    if name not in locals_():
        raise Unresolved(f"no local.{name}")
    return resolve(locals_()[name])


def _evaluate(expression: str) -> Any:
    expression = expression.strip()
    if whole := re.fullmatch(r"(var|local)\.([A-Za-z_][A-Za-z0-9_]*)", expression):
        return _reference(whole[1], whole[2])
    substituted = _REF.sub(
        lambda m: json.dumps(_reference(m[1], m[2])), expression.replace("tostring(", "str(")
    )

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "str":
            return str(walk(node.args[0]))
        raise Unresolved(expression)

    try:
        return walk(ast.parse(substituted, mode="eval").body)
    except SyntaxError:
        raise Unresolved(expression) from None


def resolve(value: Any) -> Any:
    """A literal as is; `${…}` over variable defaults, locals and arithmetic evaluated."""
    if not isinstance(value, str) or "${" not in value:
        return value
    parts = _template_parts(value)
    if len(parts) == 1 and parts[0][0]:
        return _evaluate(parts[0][1])
    return "".join(str(_evaluate(text)) if is_expr else text for is_expr, text in parts)


def resolve_or_none(value: Any) -> Any:
    try:
        return resolve(value)
    except Unresolved:
        return None


def _split_top(text: str, separator: str) -> list[str]:
    """Split at `separator` outside quotes and brackets."""
    parts, depth, quoted, current = [], 0, False, ""
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def _env_expression(expression: str) -> dict[str, Any]:
    expression = expression.strip()
    if ref := re.fullmatch(r"local\.(\w+)", expression):
        return env_map(locals_()[ref[1]])
    if expression.startswith("merge(") and expression.endswith(")"):
        merged: dict[str, Any] = {}
        for argument in _split_top(expression[len("merge(") : -1], ","):
            merged.update(_env_expression(argument))
        return merged
    if expression.startswith("{") and expression.endswith("}"):
        pairs = (item.partition("=") for item in _split_top(expression[1:-1], ",") if item.strip())
        return {key.strip(): resolve_or_none("${" + value + "}") for key, _, value in pairs}
    if len(condition := _split_top(expression, "?")) == 2:  # cond ? a : b -> keys of either
        branches = _split_top(condition[1], ":")
        return {key: None for branch in branches for key in _env_expression(branch)}
    raise AssertionError(f"cannot read the environment expression {expression!r}")


def env_map(value: Any) -> dict[str, Any]:
    """Keys (and, where static, values) of an environment map: a literal, locals, merge(), ?:."""
    if isinstance(value, dict):
        return {key: resolve_or_none(item) for key, item in value.items()}
    parts = _template_parts(value)
    assert len(parts) == 1 and parts[0][0], f"not an expression: {value!r}"
    return _env_expression(parts[0][1])


def function_env(name: str) -> dict[str, Any]:
    function = resource("aws_lambda_function", name)
    return env_map(function["environment"][0]["variables"])


def queue_name(resource_name: str) -> str:
    name: str = resolve(resource("aws_sqs_queue", resource_name)["name"])
    return name


# --- formatting, parsing, checkov --------------------------------------------------------------


def test_terraform_is_formatted() -> None:
    terraform = find_tool("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH: `terraform fmt -check` cannot run")
    run = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},  # no version check over the network
        timeout=60,
    )
    assert run.returncode == 0, f"run `terraform fmt -recursive infra/terraform`:\n{run.stdout}"


def test_every_file_of_the_layout_is_there() -> None:
    present = {path.name for path in TF_FILES}
    for expected in ("versions.tf", "variables.tf", "outputs.tf", "lambda.tf", "sqs.tf"):
        assert expected in present


@pytest.mark.parametrize("path", TF_FILES, ids=lambda path: path.name)
def test_file_parses(path: Path) -> None:
    assert parsed(path), f"{path.name} is empty"


def test_checkov_passes() -> None:
    """checkov from its own tool environment: it and python-hcl2 both ship a module named hcl2."""
    uv = find_uv()
    if uv is None:
        pytest.skip("uv is not installed: cannot run checkov in its own tool environment")
    run = subprocess.run(
        [
            *uv,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "--directory",
            str(TF_DIR),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",  # no calls to Prisma Cloud for guideline links
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=170,
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        if re.search(r"(?i)failed to (fetch|download)|dns|connect|network|offline", run.stderr):
            pytest.skip(f"checkov could not be installed from PyPI: {run.stderr[-500:]}")
        pytest.fail(f"checkov produced no report (exit {run.returncode}):\n{run.stderr[-2000:]}")
    reports = report if isinstance(report, list) else [report]
    summary = {
        key: sum(r["summary"][key] for r in reports)
        for key in ("passed", "failed", "parsing_errors")
    }
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]
    assert summary["parsing_errors"] == 0, summary
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 50, summary  # it really scanned the resources


def test_every_checkov_skip_is_justified() -> None:
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
    skips = [(path.name, m) for path in TF_FILES for m in skip.finditer(path.read_text())]
    assert skips, "expected the documented skips"
    for filename, match in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", match[1]), f"{filename}: {match[0]}"
        reason = (match[2] or "").strip()
        assert len(reason) >= 40, f"{filename}: skip of {match[1]} needs a real reason"


# --- documentation of the module ---------------------------------------------------------------


def test_every_variable_and_output_is_described() -> None:
    for kind in ("variable", "output"):
        for name, body in blocks(kind).items():
            assert str(body.get("description", "")).strip(), f"{kind} {name} has no description"


# --- Terraform against the code ----------------------------------------------------------------


@pytest.mark.parametrize("function", sorted(HANDLERS))
def test_function_env_holds_only_settings(function: str) -> None:
    env = function_env(function)
    unknown = set(env) - SETTINGS_ENV - NON_SETTINGS_ENV
    assert not unknown, f"{function}: not Settings fields (shared/config.py): {sorted(unknown)}"
    required = {
        "STORE_BACKEND",
        "QUEUE_BACKEND",
        "CACHE_BACKEND",
        "DYNAMODB_TABLE",
        "SQS_QUEUE_URL",
        "SQS_BATCH_QUEUE_URL",
        "SQS_HIGH_QUEUE_URL",
        "SQS_LOW_QUEUE_URL",
        "AWS_SECRET_ID",
    }
    assert required <= set(env), f"{function} lacks {sorted(required - set(env))}"
    leaked = set(env) & set(names.SECRET_KEYS)
    assert not leaked, f"{function}: secrets belong in Secrets Manager, not env: {leaked}"
    assert env["STORE_BACKEND"] == "dynamodb" and env["QUEUE_BACKEND"] == "sqs"
    # Every value known before apply must be one Settings accepts.
    static = {key.lower(): value for key, value in env.items() if value is not None}
    Settings(_env_file=None, **static)
    if "rate_limit" in static:
        limits.parse(static["rate_limit"])  # the API's parser (api/ratelimit.py)


def test_cache_backend_follows_the_optional_elasticache() -> None:
    common = locals_()["common_env"]
    assert common["CACHE_BACKEND"] == '${var.enable_elasticache ? "redis" : "dynamodb"}'
    assert "REDIS_URL" in env_map(locals_()["redis_env"])
    assert resolve(blocks("variable")["enable_elasticache"]["default"]) is False


@pytest.mark.parametrize("function", sorted(HANDLERS))
def test_function_runs_its_handler_from_the_one_image(function: str) -> None:
    body = resource("aws_lambda_function", function)
    assert body["package_type"] == "Image"
    assert body["image_uri"] == "${local.image_uri}"
    assert body["image_config"][0]["command"] == [HANDLERS[function]]
    assert body["tracing_config"][0]["mode"] == "${var.lambda_tracing_mode}"
    assert body["architectures"] == ["${var.lambda_architecture}"]
    assert {"memory_size", "timeout"} <= set(body)


def _module_exists(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(
            handler,
            marks=pytest.mark.xfail(
                not _module_exists(handler.rpartition(".")[0]),
                reason="handler module not built yet",
                strict=False,
            ),
        )
        for handler in HANDLERS.values()
    ],
)
def test_handler_exists(handler: str) -> None:
    module_name, _, attribute = handler.rpartition(".")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute, None)), f"{module_name} has no {attribute}()"


def test_table_matches_names() -> None:
    table = resource("aws_dynamodb_table", "main")
    assert resolve(table["name"]) == names.TABLE
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["hash_key"] == names.PARTITION_KEY
    assert table["range_key"] == names.SORT_KEY
    indexes = {
        gsi["name"]: (gsi["hash_key"], gsi["range_key"]) for gsi in table["global_secondary_index"]
    }
    assert indexes == names.INDEXES
    projections = {
        gsi["name"]: (gsi["projection_type"], gsi.get("non_key_attributes", []))
        for gsi in table["global_secondary_index"]
    }
    assert projections == {
        index: ("INCLUDE", list(kept)) if kept else ("KEYS_ONLY", [])
        for index, kept in names.INDEX_PROJECTIONS.items()
    }
    # `python -m shared.adapters.aws.setup` (moto, LocalStack, the store tests) creates the same.
    created = setup.table_definition(names.TABLE)["GlobalSecondaryIndexes"]
    assert {
        gsi["IndexName"]: (
            gsi["Projection"]["ProjectionType"],
            gsi["Projection"].get("NonKeyAttributes", []),
        )
        for gsi in created
    } == projections
    # DynamoDB refuses attribute definitions that no key uses, so the set must be exact.
    attributes = {attr["name"]: attr["type"] for attr in table["attribute"]}
    keys = {names.PARTITION_KEY, names.SORT_KEY, *(a for k in names.INDEXES.values() for a in k)}
    assert attributes == dict.fromkeys(keys, "S")
    assert table["ttl"][0] == {"attribute_name": names.TTL_ATTRIBUTE, "enabled": True}
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["enabled"] is True


@pytest.mark.parametrize(
    ("queue", "dlq", "expected"),
    [
        ("jobs", "jobs_dlq", names.JOBS_QUEUE),
        ("batch", "batch_dlq", names.BATCH_QUEUE),
        ("high", "high_dlq", names.HIGH_QUEUE),
        ("low", "low_dlq", names.LOW_QUEUE),
    ],
)
def test_queue_matches_names(queue: str, dlq: str, expected: str) -> None:
    assert queue_name(queue) == expected
    assert queue_name(dlq) == expected + names.DLQ_SUFFIX
    body = resource("aws_sqs_queue", queue)
    redrive = body["redrive_policy"]
    target = re.search(r"deadLetterTargetArn\s*=\s*aws_sqs_queue\.(\w+)\.arn", redrive)
    count = re.search(r"maxReceiveCount\s*=\s*([\w.]+)", redrive)
    assert target and target[1] == dlq, redrive
    assert count and resolve("${" + count[1] + "}") == names.MAX_RECEIVE_COUNT, redrive
    for name in (queue, dlq):
        encrypted = resource("aws_sqs_queue", name)
        assert encrypted.get("sqs_managed_sse_enabled") is True or encrypted.get(
            "kms_master_key_id"
        ), f"{name} is not encrypted"


@pytest.mark.parametrize("queue", ["jobs", "batch", "high", "low"])
def test_visibility_timeout_is_six_worker_timeouts(queue: str) -> None:
    visibility = resolve(resource("aws_sqs_queue", queue)["visibility_timeout_seconds"])
    worker_timeout = resolve(resource("aws_lambda_function", "worker")["timeout"])
    assert visibility >= 6 * worker_timeout, (visibility, worker_timeout)


TF_QUEUE_ATTRIBUTES = {  # Terraform's argument -> SQS's queue attribute
    "visibility_timeout_seconds": "VisibilityTimeout",
    "message_retention_seconds": "MessageRetentionPeriod",
    "receive_wait_time_seconds": "ReceiveMessageWaitTimeSeconds",
}


@pytest.mark.parametrize(
    ("queue", "dlq"),
    [("jobs", "jobs_dlq"), ("batch", "batch_dlq"), ("high", "high_dlq"), ("low", "low_dlq")],
)
def test_aws_setup_gives_the_queues_terraforms_settings(queue: str, dlq: str) -> None:
    """`python -m shared.adapters.aws.setup` (and `make aws-local`) create what Terraform does."""
    for name, expected in ((queue, setup.QUEUE_ATTRIBUTES), (dlq, setup.DLQ_ATTRIBUTES)):
        body = resource("aws_sqs_queue", name)
        terraform = {
            attribute: str(resolve(body[argument]))
            for argument, attribute in TF_QUEUE_ATTRIBUTES.items()
            if argument in body
        }
        assert {k: expected.get(k) for k in terraform} == terraform, name


def test_worker_timeout_covers_one_job() -> None:
    llm_timeout = resolve("${var.llm_timeout_s}")
    worker_timeout = resolve(resource("aws_lambda_function", "worker")["timeout"])
    job_timeout = Settings(_env_file=None, llm_timeout_s=llm_timeout).job_timeout_s
    assert worker_timeout >= job_timeout


def test_secret_name_matches_names_and_holds_no_value() -> None:
    assert resolve(resource("aws_secretsmanager_secret", "app")["name"]) == names.SECRET_ID
    assert blocks("variable")["secret_name"]["default"] == names.SECRET_ID
    assert not blocks("resource", "aws_secretsmanager_secret_version"), "no secret value in TF"


def test_each_queue_feeds_the_worker_with_partial_batch_failures() -> None:
    mappings = blocks("resource", "aws_lambda_event_source_mapping")
    sources = {m["event_source_arn"]: m for m in mappings.values()}
    queues = ("high", "jobs", "batch", "low")  # highest priority first (docs/adr/0015)
    assert set(sources) == {f"${{aws_sqs_queue.{q}.arn}}" for q in queues}
    concurrency = {}
    for source, mapping in sources.items():
        assert mapping["function_name"] == "${aws_lambda_function.worker.arn}"
        assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
        assert 1 <= resolve(mapping["batch_size"]) <= 10
        assert resolve(mapping["maximum_batching_window_in_seconds"]) >= 0
        concurrency[source] = resolve(mapping["scaling_config"][0]["maximum_concurrency"])
        assert concurrency[source] >= 2
    # Singles get more room than batches, so a huge batch never delays single submits; the
    # priority queues weigh the same way: high at or above jobs, low at or below batch.
    weights = [concurrency[f"${{aws_sqs_queue.{q}.arn}}"] for q in queues]
    assert weights[0] >= weights[1] > weights[2] >= weights[3], weights


def test_scheduler_runs_every_minute() -> None:
    rule = resource("aws_cloudwatch_event_rule", "scheduler")
    assert rule["schedule_expression"] == "rate(1 minute)"
    target = resource("aws_cloudwatch_event_target", "scheduler")
    assert target["arn"] == "${aws_lambda_function.scheduler.arn}"
    permission = resource("aws_lambda_permission", "scheduler_events")
    assert permission["principal"] == "events.amazonaws.com"


def test_http_api_proxies_everything_to_the_api_function() -> None:
    integration = resource("aws_apigatewayv2_integration", "api")
    assert integration["integration_type"] == "AWS_PROXY"
    assert integration["payload_format_version"] == "2.0"
    assert integration["integration_uri"] == "${aws_lambda_function.api.invoke_arn}"
    assert resource("aws_apigatewayv2_route", "default")["route_key"] == "$default"
    stage = resource("aws_apigatewayv2_stage", "default")
    assert stage["name"] == "$default" and stage["auto_deploy"] is True
    assert {"throttling_burst_limit", "throttling_rate_limit"} <= set(
        stage["default_route_settings"][0]
    )
    assert stage["access_log_settings"][0]["destination_arn"].startswith(
        "${aws_cloudwatch_log_group."
    )


def _statements(document: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = blocks("data", "aws_iam_policy_document")[document][
        "statement"
    ]
    return statements


def _actions(document: str) -> set[str]:
    found: set[str] = set()
    for statement in _statements(document):
        found.update(resolve(statement["actions"]))
    if document != "common":
        found |= _actions("common")
    return found


def test_wildcard_resources_only_where_aws_requires_them() -> None:
    for name, document in blocks("data", "aws_iam_policy_document").items():
        for statement in document.get("statement", []):
            if resolve(statement.get("resources", [])) == ["*"]:
                actions = resolve(statement["actions"])
                assert all(a.startswith("xray:Put") for a in actions), (name, actions)


def _resources_of(document: str, action: str) -> set[str]:
    return {
        arn
        for statement in _statements(document)
        if action in resolve(statement["actions"])
        for arn in resolve(statement["resources"])
    }


def test_roles_are_least_privilege() -> None:
    consume = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
    assert "sqs:SendMessage" in _actions("api") and "sqs:ChangeMessageVisibility" not in _actions(
        "api"
    )
    dlqs = set(resolve("${local.dlq_arns}"))
    assert len(dlqs) == 4 and all(
        re.fullmatch(r"\$\{aws_sqs_queue\.\w+_dlq\.arn\}", a) for a in dlqs
    )
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage"):  # the console's redrive
        assert _resources_of("api", action) == dlqs, action  # the DLQs only, never a job queue
    assert consume | {"sqs:SendMessage"} <= _actions("worker")
    assert "sqs:SendMessage" in _actions("scheduler") and not consume & _actions("scheduler")
    for role in ("api", "worker", "scheduler"):
        actions = _actions(role)
        assert "secretsmanager:GetSecretValue" in actions
        assert "dynamodb:Scan" not in actions and not any(a.endswith(":*") for a in actions)


# --- job-outcome alarms ------------------------------------------------------------------------

LOG_FIELD = re.compile(r'\$\.(\w+) = "([^"]*)"')
LOG_CALL = re.compile(r'log\.(\w+)\(\s*"([^"]*)"')


def test_job_outcome_filters_match_what_the_code_logs() -> None:
    """Each metric filter names a logger, a level and a message start: that module must log
    such a line (a renamed logger or a reworded message would silently count nothing)."""
    metrics = locals_()["job_log_metrics"]
    assert set(metrics) == {"FailedJobs", "Fallbacks"}
    for metric, pattern in metrics.items():
        fields = dict(LOG_FIELD.findall(pattern))
        spec = importlib.util.find_spec(fields["logger"])
        assert spec is not None and spec.origin, f"{metric}: no module {fields['logger']}"
        calls = LOG_CALL.findall(Path(spec.origin).read_text())
        lines = [text for level, text in calls if level.upper() == fields["level"]]
        glob = fields.get("message", "*").replace("*", ".*")
        matching = [text for text in lines if re.fullmatch(glob, text.replace("%s", "x"))]
        assert matching, f"{metric}: {fields['logger']} logs no {fields['level']} like {glob!r}"
        if metric == "FailedJobs":
            assert matching == ["job %s failed: %s"], matching  # nothing else counts as failed


def test_failed_jobs_and_fallback_rate_alarm_where_the_other_alarms_do() -> None:
    failed = resource("aws_cloudwatch_metric_alarm", "failed_jobs")
    assert failed["metric_name"] == "FailedJobs"
    rate = resource("aws_cloudwatch_metric_alarm", "fallback_rate")
    queries = {q["id"]: q for q in rate["metric_query"]}
    assert set(queries) == {"rate", "fallbacks", "jobs", "batch", "high", "low"}
    assert queries["rate"]["return_data"] is True
    for alarm in (failed, rate):
        assert alarm["alarm_actions"] == "${local.alarm_actions}"
        assert alarm["ok_actions"] == "${local.alarm_actions}"
    assert "aws_sns_topic" in blocks("resource")  # alarm_email makes a topic when none is given


# --- the OpenAI dialect's files bucket ----------------------------------------------------------


def test_files_bucket_is_private_encrypted_and_expires() -> None:
    block = resource("aws_s3_bucket_public_access_block", "files")
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls")
    assert all(block[flag] is True for flag in (*flags, "restrict_public_buckets"))
    encryption = resource("aws_s3_bucket_server_side_encryption_configuration", "files")
    default = encryption["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    rule = resource("aws_s3_bucket_lifecycle_configuration", "files")["rule"][0]
    assert rule["status"] == "Enabled"
    assert resolve(rule["expiration"][0]["days"]) >= 1
    assert rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 1


def test_only_the_api_is_told_of_and_granted_the_files_bucket() -> None:
    assert "FILES_BUCKET" in function_env("api")
    assert "FILES_BUCKET" not in function_env("worker")
    files = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}
    assert files <= _actions("api")
    for role in ("worker", "scheduler"):
        assert not any(a.startswith("s3:") for a in _actions(role)), role


# --- what the monthly price in docs/DEPLOYMENT.md assumes -----------------------------------------


def test_defaults_are_the_ones_docs_deployment_prices() -> None:
    """arm64 (20% less per GB-second) and no X-Ray traces unless asked for (Active: ~$3.40)."""
    variables = blocks("variable")
    assert resolve(variables["lambda_architecture"]["default"]) == "arm64"
    assert resolve(variables["lambda_tracing_mode"]["default"]) == "PassThrough"
    for function in HANDLERS:
        body = resource("aws_lambda_function", function)
        assert body["tracing_config"][0]["mode"] == "${var.lambda_tracing_mode}"
    deployment = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    assert "--platform linux/arm64" in deployment  # the image is built for what the functions run
    assert "--platform linux/amd64 --provenance" not in deployment


# --- the CloudWatch dashboard ------------------------------------------------------------------

_RESOURCE_REF = re.compile(r"\baws_(\w+?)\.(\w+)(\.\w+)?")


def _mock_module(directory: Path) -> None:
    """dashboard.tf's locals in a module of their own, with every resource they read replaced by a
    name as Terraform would give it (queues, functions, table) or a recognisable stand-in (alarm
    ARNs, the API id), so that `terraform apply` renders the body without any provider."""
    text = (TF_DIR / "dashboard.tf").read_text()
    text = text[: text.index('resource "aws_cloudwatch_dashboard"')]
    alarms = blocks("resource", "aws_cloudwatch_metric_alarm")
    mocks: list[str] = []
    for name, alarm in alarms.items():
        each = str(alarm.get("for_each", "")).removeprefix("${").removesuffix("}")
        value = (
            f'{{ for k, v in {each} : k => {{ arn = "alarm:{name}:${{k}}" }} }}'
            if each
            else f'{{ arn = "alarm:{name}" }}'
        )
        mocks.append(f"  mock_alarm_{name} = {value}")

    def replace(match: re.Match[str]) -> str:
        kind, name, attribute = match[1], match[2], match[3]
        if kind == "cloudwatch_metric_alarm":
            return f"local.mock_alarm_{name}{attribute or ''}"
        if kind == "apigatewayv2_api":
            return '"api-id"'
        if kind == "dynamodb_table":
            return json.dumps(resolve(resource("aws_dynamodb_table", name)["name"]))
        raise AssertionError(f"dashboard.tf reads aws_{kind}.{name}: teach this test to mock it")

    text = _RESOURCE_REF.sub(replace, text)
    queues = {
        key: {
            "name": queue_name(_queue_resource(entry["name"])),
            "dlq": queue_name(_queue_resource(entry["dlq"])),
            "max_age_s": resolve(entry["max_age_s"]),
        }
        for key, entry in locals_()["queues"].items()
    }
    given = {
        "queues": queues,
        "functions": {key: resolve(value) for key, value in locals_()["functions"].items()},
        "job_metrics_namespace": resolve(locals_()["job_metrics_namespace"]),
        "job_log_metrics": dict.fromkeys(locals_()["job_log_metrics"], "pattern"),
    }
    variables = (TF_DIR / "variables.tf").read_text()
    (directory / "variables.tf").write_text(variables)
    (directory / "dashboard.tf").write_text(text)
    given_hcl = "\n".join(
        f"  {key} = jsondecode({json.dumps(json.dumps(v))})" for key, v in given.items()
    )
    (directory / "given.tf").write_text(
        "locals {\n" + given_hcl + "\n" + "\n".join(mocks) + "\n}\n"
        'output "body" {\n  value = jsonencode({ widgets = concat('
        "local.dashboard_queue_widgets, local.dashboard_function_widgets, "
        "local.dashboard_other_widgets) })\n}\n"
    )


def _queue_resource(reference: str) -> str:
    found = re.fullmatch(r"\$\{aws_sqs_queue\.(\w+)\.name\}", reference)
    assert found, f"local.queues names a queue by {reference!r}, not aws_sqs_queue.<name>.name"
    return found[1]


@cache
def _rendered_dashboard(directory: Path) -> dict[str, Any]:
    terraform = find_tool("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH: the dashboard body cannot be rendered")
    _mock_module(directory)
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    for command in (
        ["init", "-backend=false", "-input=false"],
        ["apply", "-auto-approve", "-input=false", "-var", "image_tag=test"],
    ):
        run = subprocess.run(
            [terraform, *command],
            cwd=directory,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, (
            f"terraform {command[0]}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    output = subprocess.run(
        [terraform, "output", "-raw", "body"],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    body: dict[str, Any] = json.loads(output.stdout)
    return body


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _rendered_dashboard(tmp_path_factory.mktemp("dashboard"))


def _series(dashboard: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(widget title, metric line) for every metric line of every graph."""
    return [
        (widget["properties"]["title"], line)
        for widget in dashboard["widgets"]
        for line in widget["properties"].get("metrics", [])
    ]


def _dimension(dashboard: dict[str, Any], namespace: str, metric: str, dimension: str) -> set[str]:
    return {
        line[line.index(dimension) + 1]
        for _, line in _series(dashboard)
        if line[:2] == [namespace, metric] and dimension in line
    }


def test_dashboard_is_one_resource_named_after_the_stack() -> None:
    dashboards = blocks("resource", "aws_cloudwatch_dashboard")
    assert list(dashboards) == ["main"]
    assert dashboards["main"]["dashboard_name"] == "${var.name}"


def test_dashboard_shows_every_queue_and_dlq(dashboard: dict[str, Any]) -> None:
    redrive = {
        name: re.search(
            r"deadLetterTargetArn\s*=\s*aws_sqs_queue\.(\w+)\.arn", body["redrive_policy"]
        )
        for name, body in blocks("resource", "aws_sqs_queue").items()
        if "redrive_policy" in body
    }
    sources = {queue_name(name) for name in redrive}
    dlqs = {queue_name(found[1]) for found in redrive.values() if found}
    every_queue = {queue_name(name) for name in blocks("resource", "aws_sqs_queue")}
    assert sources | dlqs == every_queue, "a queue with neither a DLQ nor a source queue"
    for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        shown = _dimension(dashboard, "AWS/SQS", metric, "QueueName")
        assert sources <= shown, (metric, sorted(sources - shown))
    dead_letters = [
        line[3] for title, line in _series(dashboard) if title.startswith("Dead letters")
    ]
    assert sorted(dead_letters) == sorted(dlqs)


def test_dashboard_shows_every_function(dashboard: dict[str, Any]) -> None:
    roles = [
        re.fullmatch(r"\$\{local\.functions\.(\w+)\}", body["function_name"])
        for body in blocks("resource", "aws_lambda_function").values()
    ]
    assert all(roles), "every function is named from local.functions, which the dashboard reads"
    functions = {resolve(locals_()["functions"][role[1]]) for role in roles if role}
    assert len(functions) == len(HANDLERS)
    for metric in ("Errors", "Throttles", "Duration"):
        assert _dimension(dashboard, "AWS/Lambda", metric, "FunctionName") == functions, metric


def test_dashboard_shows_table_api_and_fallback_rate(dashboard: dict[str, Any]) -> None:
    table = resolve(resource("aws_dynamodb_table", "main")["name"])
    for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
        assert _dimension(dashboard, "AWS/DynamoDB", metric, "TableName") == {table}
    assert _dimension(dashboard, "AWS/ApiGateway", "5xx", "ApiId") == {"api-id"}
    namespace = resolve(locals_()["job_metrics_namespace"])
    assert any(line[:2] == [namespace, "Fallbacks"] for _, line in _series(dashboard))
    (rate,) = [
        line[0]["expression"]
        for _, line in _series(dashboard)
        if isinstance(line[0], dict) and "expression" in line[0]
    ]
    ids = {line[-1].get("id") for _, line in _series(dashboard) if isinstance(line[-1], dict)}
    assert (
        "fallbacks" in rate
        and set(re.findall(r"\b[a-z]\w*\b", rate)) - {"fallbacks"} - {"if"} <= ids
    )


def _alarmed_metric_names(alarm: dict[str, Any]) -> set[str]:
    queries = alarm.get("metric_query") or []
    if not queries:
        return {alarm["metric_name"]}
    return {metric["metric_name"] for q in queries for metric in q.get("metric") or []}


def test_dashboard_graphs_what_every_alarm_watches(dashboard: dict[str, Any]) -> None:
    """No alarm widget (its alarms' metrics would count against the free allowance too): every
    alarm's metric is on a graph instead, so an operator sees what an alarm fired on."""
    graphed = {line[1] for _, line in _series(dashboard) if isinstance(line[0], str)}
    alarms = blocks("resource", "aws_cloudwatch_metric_alarm")
    assert alarms
    for name, alarm in alarms.items():
        assert _alarmed_metric_names(alarm) <= graphed, name


# CloudWatch's always-free allowance: three dashboards of up to 50 metrics each (DEPLOYMENT.md
# prices this one at $0 on the assumption that the account has no other dashboards).
FREE_DASHBOARD_METRICS = 50


def test_dashboard_fits_cloudwatchs_free_allowance(dashboard: dict[str, Any]) -> None:
    """Counted the strict way: every metric line of every graph, hidden ones that metric math
    reads and a second statistic of one metric included (and no alarm widget, whose alarms'
    metrics would count too)."""
    graphed = [
        line
        for _, line in _series(dashboard)
        if not (isinstance(line[0], dict) and "expression" in line[0])
    ]
    assert not [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert len(graphed) <= FREE_DASHBOARD_METRICS, len(graphed)
