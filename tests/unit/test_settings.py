"""Settings are parsed once into typed fields, keep their environment formats, and never print
their secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from shared.config import ApiKey, Settings
from tests.conftest import make_settings

SECRETS = {
    "API_KEYS": "t1:sk-one-secret, t2 : sk-two-secret ",
    "WEBHOOK_SIGNING_SECRET": "whsec-master-secret",
    "GEMINI_API_KEY": "gemini-secret",
    "OPENROUTER_API_KEY": "openrouter-secret",
    "REDIS_URL": "redis://:redis-secret@127.0.0.1:6379/0",
}


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_api_keys_and_the_retry_schedule_are_parsed_from_their_env_formats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(monkeypatch, **SECRETS, WEBHOOK_RETRY_SCHEDULE="0, 5,300 ,1800")
    assert settings.api_keys == (
        ApiKey(tenant="t1", key=SecretStr("sk-one-secret")),
        ApiKey(tenant="t2", key=SecretStr("sk-two-secret")),
    )
    assert settings.tenants_by_key == {"sk-one-secret": "t1", "sk-two-secret": "t2"}
    assert settings.webhook_retry_schedule == (0.0, 5.0, 300.0, 1800.0)
    assert settings.retry_delays_s == [0.0, 5.0, 300.0, 1800.0]


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEYS", "WEBHOOK_RETRY_SCHEDULE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.api_keys == () and settings.tenants_by_key == {}
    assert settings.retry_delays_s == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, **SECRETS)
    printed = repr(settings) + str(settings) + f"{settings}"
    for secret in ("sk-one", "sk-two", "whsec-master", "gemini-secret", "openrouter-secret"):
        assert secret not in printed, secret
    assert "redis-secret" not in printed
    assert "sk-one" not in settings.model_dump_json()  # SecretStr: masked when serialized too


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_KEYS": "t1:sk-leaky-secret,broken"}, "tenant1:key1"),
        ({"API_KEYS": "t1:sk-leaky-secret,:k2"}, "tenant1:key1"),
        ({"API_KEYS": "t1:sk-leaky-secret,t2:sk-leaky-secret"}, "same key"),
        ({"WEBHOOK_RETRY_SCHEDULE": "0,soon"}, "comma-separated seconds"),
        ({"WEBHOOK_RETRY_SCHEDULE": "0,-5"}, "greater than or equal to 0"),
        ({"WEBHOOK_RETRY_SCHEDULE": " , "}, "at least 1 item"),
    ],
)
def test_malformed_values_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as refused:
        from_env(monkeypatch, **env)
    assert "sk-leaky-secret" not in str(refused.value)


def test_model_aliases_join_the_served_models() -> None:
    settings = make_settings(
        gemini_model="gemini-2.5-pro", model_aliases="fast=gemini-2.5-flash, cheap=openai/gpt-4o"
    )

    assert settings.models.names == ["gemini-2.5-pro", "openai/gpt-4o-mini", "fast", "cheap"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("model_aliases", "fast"),
        ("model_aliases", "fast=../evil"),
        ("model_aliases", "x?y=gemini-2.5-flash"),
        ("gemini_model", "gemini/../v1/evil"),
        ("openrouter_model", "a b"),
    ],
)
def test_a_model_setting_that_is_not_a_plain_id_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        make_settings(**{field: value})


ROTATION = {
    "WEBHOOK_SIGNING_SECRET": "whsec-new-master",
    "WEBHOOK_SIGNING_SECRET_PREVIOUS": "sk-leaky-old-master",
    "WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT": "2026-12-01T00:00:00Z",
}


def test_a_signing_secret_rotation_is_read_and_never_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(monkeypatch, **ROTATION)
    previous = settings.webhook_signing_secret_previous
    assert previous is not None and previous.get_secret_value() == "sk-leaky-old-master"
    expires = settings.webhook_signing_secret_previous_expires_at
    assert expires is not None and expires.isoformat() == "2026-12-01T00:00:00+00:00"
    assert "sk-leaky" not in repr(settings) + settings.model_dump_json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT": ""}, "together"),
        ({"WEBHOOK_SIGNING_SECRET_PREVIOUS": ""}, "together"),
        ({"WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT": "2026-12-01T00:00:00"}, "timezone"),
        ({"WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT": "next week"}, "datetime"),
        ({"WEBHOOK_SIGNING_SECRET": "sk-leaky-old-master"}, "equals"),
    ],
)
def test_a_rotation_needs_an_end_and_a_different_secret(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, str], message: str
) -> None:
    env = {k: v for k, v in (ROTATION | change).items() if v}
    for name in ROTATION:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match=message) as refused:
        from_env(monkeypatch, **env)
    assert "sk-leaky" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("GEMINI_API_KEY", "…", "GEMINI_API_KEY"),
        ("OPENROUTER_API_KEY", "...", "OPENROUTER_API_KEY"),
        ("WEBHOOK_SIGNING_SECRET", "changeme", "WEBHOOK_SIGNING_SECRET"),
        ("API_KEYS", "acme:…", "API_KEYS (acme)"),
        ("ADMIN_API_KEYS", "…", "ADMIN_API_KEYS"),
        ("KEY_HASH_SECRET", "changeme", "KEY_HASH_SECRET"),
    ],
)
def test_lambda_refuses_the_secret_templates_placeholders(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chatjobs-api")
    with pytest.raises(ValidationError) as refused:
        from_env(monkeypatch, **{**SECRETS, name: value})
    message = str(refused.value)
    assert named in message and "placeholder" in message and "DEPLOYMENT.md" in message


def test_admin_keys_are_a_list_kept_apart_from_tenant_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = from_env(monkeypatch, **{**SECRETS, "ADMIN_API_KEYS": " a1 , a2,,"})
    assert [k.get_secret_value() for k in settings.admin_api_keys] == ["a1", "a2"]
    tenant_key = next(iter(from_env(monkeypatch, **SECRETS).tenants_by_key))
    with pytest.raises(ValidationError, match="share a key") as refused:
        from_env(monkeypatch, **{**SECRETS, "ADMIN_API_KEYS": tenant_key})
    assert tenant_key not in str(refused.value)


def test_placeholders_are_refused_on_lambda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    local = from_env(monkeypatch, **{**SECRETS, "GEMINI_API_KEY": "…"})
    assert local.gemini_api_key is not None  # a laptop may keep a template's value
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chatjobs-api")
    assert from_env(monkeypatch, **SECRETS).gemini_api_key is not None  # real values serve
